"""Fetching Debian's kernels: the packages of a named profile, unpacked into the cache.

A profile's packages are found in apt's lists, downloaded with `apt-get download` and
unpacked with `dpkg-deb -x` (never installed: the host's /boot and /lib/modules stay
untouched).  Kernels of the host's own release (bookworm, whose security suite
carries 6.12) come through the host's apt configuration; newer ones (trixie-backports,
sid) through a private one kept in the cache (`<cache>/apt/<suites>/`: its
sources.list, lists and package cache), so the host's apt sources are never changed.

Everything is unpacked in a temporary directory and renamed into place only once it
is complete and its kernel and headers agree on the release: a failed or killed fetch
leaves nothing half-written under `kernels/`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.files import make_temp_dir, sweep_abandoned
from harness.kernel.apt import Apt, run_checked
from harness.kernel.profiles import (
    PROFILE_RECORD,
    KernelProfile,
    _image_problem,
    cache_root,
    describe_unpacked,
    profile_names,
    read_record,
    write_record,
)


@dataclass(frozen=True)
class Series:
    """Where a named profile's kernel comes from."""

    package: str  # regex over package names; group 1 is the ABI ("6.1.0-56", "7.3.4+deb13")
    suites: tuple[str, ...] = ()  # a private apt configuration's suites; () = the host's
    extra: tuple[str, ...] = ()  # the kernel's other packages, "{abi}" filled in


SERIES: dict[str, Series] = {
    "debian-6.1": Series(r"linux-image-(6\.1\.0-\d+)-amd64-unsigned"),
    # Debian 12 ships 6.12 itself, in bookworm-security (source package linux-6.12);
    # bookworm-backports' 6.12 is older and no longer follows it.
    "debian-6.12": Series(r"linux-image-(6\.12\.\d+\+deb12)-amd64-unsigned"),
    # 7.x splits the kernel: linux-image-<abi>-amd64 is empty and depends on
    # linux-binary (the signed vmlinuz), linux-modules and linux-base (config,
    # System.map, modules.order/builtin).  The unsigned vmlinuz, from the same source
    # package as the modules and headers, is linux-binary-unsigned.  Its kbuild tools
    # need trixie's libc: modules are built in a build root (harness.kernel.buildroot).
    "debian-7.3": Series(
        r"linux-binary-unsigned-(7\.3\.\d+\+deb\d+)-amd64",
        ("trixie-backports", "sid"),
        ("linux-modules-{abi}-amd64", "linux-base-{abi}-amd64"),
    ),
}
assert list(SERIES) == profile_names(), "harness.kernel.profiles.DEBIAN_PROFILES and SERIES differ"


def series_of(name: str) -> Series:
    try:
        return SERIES[name]
    except KeyError:
        raise UsageError(f"unknown kernel profile {name!r}") from None


def apt_for(name: str) -> Apt:
    return Apt(series_of(name).suites)


# ---- finding and fetching a profile's packages --------------------------------------


def _literal_prefix(pattern: str) -> str:
    """`linux-image-(6\\.1...` -> `linux-image-`: what apt-cache pkgnames filters on."""
    return re.split(r"[\\(\[.*+?]", pattern, maxsplit=1)[0]


def newest_package(pattern: str, apt: Apt | None = None) -> tuple[str, str]:
    """(package, abi) of the newest package whose name matches `pattern` in apt's lists."""
    apt = apt or Apt()
    names = apt.run(["apt-cache", "pkgnames", _literal_prefix(pattern)]).split()
    matches = [(n, m.group(1)) for n in names if (m := re.fullmatch(pattern, n))]
    if not matches:
        hint = "" if apt.suites else " (apt-get update?)"
        raise HarnessError(f"no package matching {pattern} in {apt.where}{hint}")

    def key(item: tuple[str, str]) -> list[int]:
        return [int(x) for x in re.findall(r"\d+", item[1])]

    return max(matches, key=key)


def header_packages(abi: str, apt: Apt | None = None) -> list[str]:
    """linux-headers-<abi>-amd64 plus what it depends on that carries files we need
    (the -common headers and the linux-kbuild-* scripts)."""
    apt = apt or Apt()
    main = f"linux-headers-{abi}-amd64"
    deps = apt.run(["apt-cache", "depends", main])
    wanted = [main]
    for line in deps.splitlines():
        line = line.strip()
        if line.startswith("Depends:"):
            dep = line.split()[1]
            if dep.startswith(("linux-headers-", "linux-kbuild-")):
                wanted.append(dep)
    return wanted


def package_depends(package: str, apt: Apt) -> list[str]:
    """The names `package` depends on (first alternative of each), from apt's lists."""
    out = apt.run(["apt-cache", "depends", package])
    return [
        line.split()[1]
        for line in out.splitlines()
        if line.strip().startswith("Depends:") and not line.split()[1].startswith("<")
    ]


def fetch_debian_profile(name: str, force: bool = False) -> KernelProfile:
    """Download and unpack the newest kernel image + headers of a named Debian series.
    A private configuration's lists are refreshed once if the kernel is not found or
    its download fails (stale lists name packages the mirror no longer has)."""
    series = series_of(name)
    apt = Apt(series.suites)
    if not series.suites:
        return _fetch(name, series, apt, force)
    apt.ensure_lists()
    try:
        return _fetch(name, series, apt, force)
    except HarnessError:
        if apt.updated:
            raise
        apt.update()
        return _fetch(name, series, apt, force)


def _fetch(name: str, series: Series, apt: Apt, force: bool) -> KernelProfile:
    dest = cache_root() / "kernels" / name
    package, abi = newest_package(series.package, apt)
    record = dest / PROFILE_RECORD
    if not force:
        existing = read_record(record)
        if (
            existing is not None
            and existing.release == f"{abi}-amd64"
            and not _image_problem(existing, record)
        ):
            return existing
    packages = [package, *(p.format(abi=abi) for p in series.extra), *header_packages(abi, apt)]
    sweep_abandoned(cache_root(), "klp-fetch")  # downloads of a killed setup
    tmp_path = make_temp_dir(cache_root(), "klp-fetch")
    try:
        apt.run(["apt-get", "download", "-q", *packages], cwd=tmp_path)
        root = tmp_path / "root"
        for deb in sorted(tmp_path.glob("*.deb")):
            run_checked(["dpkg-deb", "-x", str(deb), str(root)])
        fix_header_paths(root)
        profile = describe_unpacked(name, root)  # also checks that it is complete
        check_headers_match(name, profile)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        root.rename(dest)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    profile = describe_unpacked(name, dest)
    write_record(profile, record)
    return profile


def check_headers_match(name: str, profile: KernelProfile) -> None:
    """The headers must be those of the kernel image: their UTS_RELEASE is its release
    (modules built against other headers would be refused by the guest's kernel)."""
    uts = profile.build_dir / "include/generated/utsrelease.h"
    try:
        match = re.search(r'UTS_RELEASE\s+"([^"]+)"', uts.read_text())
    except OSError as exc:
        raise HarnessError(
            f"kernel profile {name}: headers lack {uts.name} ({exc.strerror})"
        ) from None
    found = match.group(1) if match else "?"
    if found != profile.release:
        raise HarnessError(
            f"kernel profile {name}: headers are for {found}, the kernel image is "
            f"{profile.release}: not kept"
        )


def fix_header_paths(root: Path) -> None:
    """Make the absolute /usr/... paths of Debian's header tree relative, so the unpacked
    tree builds from the cache wherever the cache lives.

    Debian's linux-headers-<abi>-amd64/Makefile includes
    /usr/src/linux-headers-<abi>-common/Makefile (7.x also sets KBUILD_OUTPUT to its
    own /usr/src path), and its `scripts` and `tools` are symlinks into
    /usr/lib/linux-kbuild-*; `make -C <build_dir>` runs in the build dir, so paths
    relative to it work."""
    src = root / "usr/src"
    for makefile in src.glob("linux-headers-*/Makefile"):
        text = makefile.read_text()
        fixed = re.sub(r"/usr/src/(linux-headers-[^/\s]+)", r"../\1", text)
        makefile.write_text(fixed)
    module_dirs = [*(root / "lib/modules").glob("*"), *(root / "usr/lib/modules").glob("*")]
    links = [*src.glob("linux-headers-*/*"), *(d / "build" for d in module_dirs)]
    for link in links:
        if link.is_symlink():
            target = os.readlink(link)
            if target.startswith("/"):
                link.unlink()
                link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))


def fetch_profile(name: str, apt: Apt) -> KernelProfile:
    """A fetched profile; refreshes apt's lists once if the kernel is not found or
    its download fails (stale lists name packages the mirror no longer has)."""
    if series_of(name).suites:  # a private apt configuration: refreshed by fetching
        try:
            return fetch_debian_profile(name)
        except HarnessError as exc:
            if str(exc).startswith(f"kernel profile {name}"):
                raise
            raise HarnessError(f"kernel profile {name}: {exc}") from None
    try:
        return fetch_debian_profile(name)
    except HarnessError as exc:
        if apt.updated:
            raise
        print(f"setup: {name}: {exc}", file=sys.stderr)
        apt.update()
        return fetch_debian_profile(name)
