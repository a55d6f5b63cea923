"""A Debian profile's real artifacts laid out as a built kernel tree, for `--kernel-dir`.

Building a kernel takes ~25 minutes on two cores; CI tests the own-tree path without
one.  A built tree, as `--kernel-dir` reads it, holds `.config`,
`include/config/kernel.release`, `arch/x86/boot/bzImage`, a Makefile that builds
out-of-tree modules, and `mod-install/lib/modules/<release>`.  Debian's headers
package is already such a build directory except for the kernel image and the
modules, so the arranged tree is the headers directory's entries as symlinks, plus:

* `include/config/kernel.release` saying the release (Debian's says the upstream
  version: its kbuild takes the release from `.kernelvariables` instead),
* `Makefile` that includes Debian's common Makefile by absolute path (Debian's uses a
  path relative to the headers directory),
* `arch/x86/boot/bzImage` -> the profile's kernel image,
* `mod-install/lib/modules/<release>` -> the profile's modules,
* `tools/testing/selftests/livepatch` and `lib/livepatch` -> the selftests' sources
  when they are given (`klp-harness selftests` reads them from the tree).

It lives at a fixed path in the cache, so its module builds, guest image and saved
guest are reused from one test run to the next; it is made in a scratch directory
and renamed into place, so concurrent runs each see a whole tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from harness.files import make_temp_dir
from harness.kernel.profiles import KernelProfile, cache_root

FORMAT = 2  # bump when the layout changes


def arranged_tree(profile: KernelProfile, selftests: Path | None = None) -> Path:
    """The tree for `profile` (made now if missing or made from other inputs)."""
    parent = cache_root() / "arranged-trees"
    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / profile.name
    stamp = json.dumps(
        {"format": FORMAT, "release": profile.release, "bzimage": str(profile.bzimage),
         "selftests": str(selftests)}, sort_keys=True
    )  # fmt: skip
    if _stamp(dest) == stamp:
        return dest
    scratch = make_temp_dir(parent, f".{profile.name}")
    try:
        _lay_out(profile, scratch, selftests)
        (scratch / ".arranged").write_text(stamp)
        if dest.exists():
            shutil.rmtree(dest)
        try:
            scratch.rename(dest)
        except OSError:  # another run placed it meanwhile
            if _stamp(dest) != stamp:
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def _stamp(tree: Path) -> str | None:
    try:
        return (tree / ".arranged").read_text()
    except OSError:
        return None


def _lay_out(profile: KernelProfile, tree: Path, selftests: Path | None) -> None:
    headers = profile.build_dir
    for entry in headers.iterdir():
        if entry.name != "Makefile":
            (tree / entry.name).symlink_to(os.path.realpath(entry))
    included = re.search(r"^include\s+(\S+)", (headers / "Makefile").read_text(), re.MULTILINE)
    assert included, f"{headers}/Makefile includes no common Makefile"
    common = os.path.realpath(headers / included.group(1))
    (tree / "Makefile").write_text(f"include {common}\n")
    _place(tree, "arch/x86/boot/bzImage", profile.bzimage)
    # Debian's include/config/kernel.release says the upstream version (6.1.192); its
    # kbuild overrides KERNELRELEASE (.kernelvariables), as a built tree's file would not.
    _place(tree, "include/config/kernel.release", profile.bzimage)  # unfolds the dirs
    release = tree / "include/config/kernel.release"
    release.unlink()
    release.write_text(profile.release + "\n")
    _place(tree, f"mod-install/lib/modules/{profile.release}", profile.modules_dir)
    if selftests is not None:
        for rel in ("tools/testing/selftests/livepatch", "lib/livepatch"):
            if (selftests / rel).is_dir():
                _place(tree, rel, selftests / rel)


def _place(tree: Path, rel: str, target: Path) -> None:
    """A symlink `tree/rel` -> target, making the directories on the way real ones
    (a symlinked directory is unfolded into a directory of symlinks to its entries,
    so that adding a file does not write into the profile)."""
    current = tree
    for part in Path(rel).parts[:-1]:
        current = current / part
        if current.is_symlink():
            real = Path(os.path.realpath(current))
            current.unlink()
            current.mkdir()
            for child in real.iterdir():
                (current / child.name).symlink_to(os.path.realpath(child))
        elif not current.exists():
            current.mkdir()
    link = tree / rel
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.realpath(target))
