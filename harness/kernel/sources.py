"""The parts of a kernel's source tree the harness uses, fetched once per series.

The livepatch selftests (tools/testing/selftests/livepatch), their test modules
(lib/livepatch in 6.1, the selftests' test_modules/ since 6.8) and the kernel's sample
livepatch modules (samples/livepatch): from the user's tree, or from Debian's
linux-source-<series> package, downloaded through the profile's apt
(harness.kernel.apt) and unpacked into the cache whole or not at all.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.files import discard, make_temp_dir, sweep_abandoned
from harness.kernel.apt import run_checked
from harness.kernel.debian import apt_for
from harness.kernel.profiles import KernelProfile, cache_root, load_profile

SELFTESTS = "tools/testing/selftests/livepatch"
MODULE_DIRS = (f"{SELFTESTS}/test_modules", "lib/livepatch")
SAMPLES = "samples/livepatch"  # the kernel's sample livepatch modules


@dataclass(frozen=True)
class LivepatchSources:
    root: Path  # a tree holding SELFTESTS and one of MODULE_DIRS

    @property
    def scripts_dir(self) -> Path:
        return self.root / SELFTESTS

    @property
    def modules_dir(self) -> Path:
        for rel in MODULE_DIRS:
            if (self.root / rel).is_dir():
                return self.root / rel
        raise HarnessError(f"no livepatch test modules in {self.root}")

    def makefile_list(self, variable: str) -> list[str]:
        """Words of a `VAR := a b \\` list in the selftests' Makefile."""
        text = (self.scripts_dir / "Makefile").read_text().replace("\\\n", " ")
        match = re.search(rf"^{variable}\s*:?=(.*)$", text, re.MULTILINE)
        return match.group(1).split() if match else []


def fetch_sources(profile: KernelProfile) -> LivepatchSources:
    """The selftests of the profile's kernel: its tree, or Debian's linux-source."""
    if profile.name.startswith("dir:"):
        # An O= build directory holds no sources; kbuild links them as `source`.
        tree = profile.build_dir
        if not (tree / SELFTESTS).is_dir() and (tree / "source" / SELFTESTS).is_dir():
            tree = tree / "source"
        return LivepatchSources(tree)
    dest = _cache_dir(profile)
    if _complete(dest):
        return LivepatchSources(dest)
    package = f"linux-source-{profile.series}"
    apt = apt_for(profile.name)  # the host's apt, or the profile's private configuration
    apt.ensure_lists()
    sweep_abandoned(cache_root(), "klp-fetch")
    tmp_path = make_temp_dir(cache_root(), "klp-fetch")
    try:
        apt.run(["apt-get", "download", "-q", package], tmp_path)
        deb = next(tmp_path.glob("*.deb"))
        run_checked(["dpkg-deb", "-x", str(deb), "x"], tmp_path)
        tarball = next((tmp_path / "x/usr/src").glob("linux-source-*.tar.xz"))
        staging = tmp_path / "tree"
        with tarfile.open(tarball) as tar:
            top = tarball.name.removesuffix(".tar.xz")
            dirs = (SELFTESTS, SAMPLES, *MODULE_DIRS)
            wanted = [f"{top}/{d}" for d in dirs]
            members = [m for m in tar if any(m.name.startswith(w) for w in wanted)]
            tar.extractall(staging, members=members, filter="data")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():  # incomplete: from a copy that was not atomic
            discard(dest, cache_root())
        (staging / top).rename(dest)  # whole, or not at all
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    return LivepatchSources(dest)


def cached_sources(profile_name: str) -> LivepatchSources | None:
    """The named profile's selftests if already fetched: cheap, never downloads (for
    listing the scripts, e.g. when pytest collects them)."""
    try:
        profile = load_profile(profile_name)
    except HarnessError:
        return None
    dest = _cache_dir(profile)
    return LivepatchSources(dest) if _complete(dest) else None


def _cache_dir(profile: KernelProfile) -> Path:
    return cache_root() / "selftests" / f"linux-source-{profile.series}"


def _complete(dest: Path) -> bool:
    return (dest / SELFTESTS).is_dir() and (dest / SAMPLES).is_dir()
