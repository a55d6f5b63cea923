"""The module build cache's entries: published whole, verified on every use.

An entry is `builds/<key>/` holding `<name>.ko`, `<name>.c`, the batch's build log
and `manifest.json`, which records the sha256 of the `.ko` and the source.  An entry
is staged in `builds/tmp/` and renamed into place, so it appears complete or not at
all; a reader re-hashes the files against the manifest, so an entry damaged later
(truncated by a full disk, edited by hand, bit rot) is thrown away and rebuilt
instead of being loaded into a guest whose kernel would then be blamed.
Work directories left by a SIGKILLed build are swept by the next build.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.errors import HarnessError
from harness.files import discard, make_temp_dir, sha256_file, sweep_abandoned

MANIFEST = "manifest.json"
LOG = "build.log"
TMP = "tmp"  # work, stage and trash directories, each named <stem>-<pid>-XXXXXXXX
TEMP_STEMS = ("build", "stage", "trash")


def tmp_dir(builds: Path) -> Path:
    return builds / TMP


def sweep(builds: Path) -> None:
    """Remove what builds killed before their cleanup left in builds/tmp/."""
    for stem in TEMP_STEMS:
        sweep_abandoned(tmp_dir(builds), stem)


def work_dir(builds: Path) -> Path:
    """A fresh directory for one make call."""
    return make_temp_dir(tmp_dir(builds), "build")


def lookup(builds: Path, key: str, name: str) -> Path | None:
    """The `.ko` of a verified entry, or None.  A damaged entry is discarded."""
    entry = builds / key
    if not entry.is_dir():
        return None
    if _verified(entry, name):
        return entry / f"{name}.ko"
    discard(entry, tmp_dir(builds))
    return None


def _verified(entry: Path, name: str) -> bool:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        sums = manifest["sha256"]
        if not isinstance(sums, dict) or f"{name}.ko" not in sums:
            return False
        return all(sha256_file(entry / str(f)) == h for f, h in sums.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def invalidate(builds: Path, key: str) -> None:
    """Throw away an entry whose content passed its checksums but not the .ko checks
    (written by an older harness, or its manifest was rewritten too)."""
    discard(builds / key, tmp_dir(builds))


def publish(builds: Path, key: str, name: str, work: Path) -> Path:
    """Publish one module's .ko, source and the batch's log under builds/<key>/.

    Staged in a private dir and renamed into place, so a concurrent build of the same
    key never exposes a half-written entry; if another process won, its copy is used."""
    final = builds / key
    stage = make_temp_dir(tmp_dir(builds), "stage")
    try:
        sums = {}
        for filename in (f"{name}.ko", f"{name}.c", LOG):
            shutil.copyfile(work / filename, stage / filename)
            if filename != LOG:
                sums[filename] = sha256_file(stage / filename)
        manifest = {"name": name, "sha256": sums}
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        stage.rename(final)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        won = lookup(builds, key, name)
        if won is None:
            message = f"cannot store {name} in the build cache at {final}: {exc}"
            raise HarnessError(message) from None
    return final / f"{name}.ko"
