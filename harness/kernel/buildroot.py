"""Build roots: modules for kernels newer than the host are built in a minimal Debian
tree of the kernel's own release.

Debian's 7.x kernels come from trixie-backports: their linux-kbuild tools (modpost,
objtool, resolve_btfids) need libc >= 2.38 and the kernel was built with gcc-14, so
neither runs on a Debian 12 host.  A build root is a `mmdebstrap --variant=minbase`
tree of that release holding make, the kernel's compiler and what its kbuild tools
link against.  It is made once per (suite, package list), under
`<cache>/buildroots/<suite>-<hash>/`, in a temporary directory renamed into place
when complete (a marker file inside says so), and reused by every checkout.

A build runs in it with `bwrap`: a fresh root holding the build root's /usr and /etc
read-only, the kernel profile's tree read-only and the build's directory writable,
both at their host paths, so make's arguments are the same as on the host.  bwrap
needs no mounts outside its own namespace, so a killed build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.files import atomic_write, exclusive, make_temp_dir, sweep_abandoned
from harness.kernel.apt import KEYRING, MIRROR
from harness.kernel.profiles import KernelProfile, cache_root, read_config

# Debian's ABI suffix (`7.3.4+deb13-amd64`) -> the release whose libc its tools need.
SUITES = {13: "trixie", 14: "sid"}
HOST_DEBIAN = 12  # bookworm builds its own kernels' modules (6.1, 6.12)
# What linux-kbuild-7.3.4+deb13 depends on (pahole for the modules' BTF; libc6 is in
# every root), and make; the compiler is the kernel's own (CONFIG_CC_VERSION_TEXT).
KBUILD_DEPENDS = ("make", "pahole", "libelf1t64", "libssl3t64", "zlib1g")
MARKER = ".klp-buildroot"
# In a `--kernel-dir` tree built in a build root: that root's path.  The tree's kbuild
# tools (fixdep, modpost, objtool) were linked in the root and need its libc, so the
# harness builds the tree's modules there too (images/livepatch-tools/recipe.py writes it).
TREE_ROOT = ".klp-harness-buildroot"
PATH = "/usr/bin:/bin"


def suite_for(profile: KernelProfile) -> str | None:
    """The Debian release a named profile's modules are built in; None: the host."""
    if profile.name.startswith("dir:"):
        return None
    match = re.search(r"\+deb(\d+)-", profile.release)
    if match is None or int(match.group(1)) <= HOST_DEBIAN:
        return None
    return SUITES.get(int(match.group(1)), "sid")


def compiler(profile: KernelProfile) -> tuple[str, str]:
    """(program, package) of the compiler the kernel was built with: the first word of
    CONFIG_CC_VERSION_TEXT (`x86_64-linux-gnu-gcc-14`) and `gcc-<major>`."""
    config = read_config(profile.config)
    words = config.get("CONFIG_CC_VERSION_TEXT", "").strip('"').split()
    version = int(config.get("CONFIG_GCC_VERSION", "0") or 0)
    if not words or version < 10000:
        raise HarnessError(f"{profile.name}: its config names no gcc (CONFIG_GCC_VERSION)")
    return words[0], f"gcc-{version // 10000}"


def packages_for(profile: KernelProfile) -> list[str]:
    return sorted({*KBUILD_DEPENDS, compiler(profile)[1]})


def root_dir(suite: str, packages: Sequence[str]) -> Path:
    digest = hashlib.sha256(" ".join([suite, *packages]).encode()).hexdigest()[:12]
    return cache_root() / "buildroots" / f"{suite}-{digest}"


def tree_root(profile: KernelProfile) -> Path | None:
    """The build root a `--kernel-dir` tree names (TREE_ROOT), None without one."""
    marker = profile.build_dir / TREE_ROOT
    if not profile.name.startswith("dir:") or not marker.is_file():
        return None
    root = Path(marker.read_text().strip())
    if not (root / MARKER).is_file():
        raise HarnessError(
            f"{profile.name}: built in {root} ({marker}), which is not a build root any more"
        )
    return root


def cc_for(profile: KernelProfile) -> str | None:
    """The compiler program in the profile's build root; None: the profile has none.
    A tree's root has the versioned program (`gcc-12`), a release's the first word
    of CONFIG_CC_VERSION_TEXT, which Debian's kernels name so."""
    if tree_root(profile) is not None:
        return compiler(profile)[1]
    return compiler(profile)[0] if suite_for(profile) is not None else None


def root_for(profile: KernelProfile) -> Path | None:
    """The profile's build root, made now if it is not there yet; None: build on the host."""
    named = tree_root(profile)
    if named is not None:
        return named
    suite = suite_for(profile)
    if suite is None:
        return None
    return ensure(suite, packages_for(profile), profile.name, compiler(profile)[0])


def ensure(suite: str, packages: Sequence[str], name: str, cc: str) -> Path:
    """The build root of `suite` with `packages`, made if missing (one maker at a time;
    the others wait for it and use its root)."""
    dest = root_dir(suite, packages)
    if (dest / MARKER).is_file():
        return dest
    with exclusive(dest.parent / ".lock"):
        if (dest / MARKER).is_file():
            return dest
        _make(dest, suite, packages, name, cc)
    return dest


def _make(dest: Path, suite: str, packages: Sequence[str], name: str, cc: str) -> None:

    for tool, package in (("mmdebstrap", "mmdebstrap"), ("bwrap", "bubblewrap")):
        if shutil.which(tool) is None:
            raise HarnessError(f"build root for {name}: no {tool} (install {package})")
    sweep_abandoned(dest.parent, "klp-root")
    work = make_temp_dir(dest.parent, "klp-root")
    tree = work / "root"
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        suite,
        str(tree),
        f"deb [signed-by={KEYRING}] {MIRROR} {suite} main",
    ]
    if os.geteuid() == 0:  # its mounts live and die with a namespace of its own
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            *argv[:1],
            "--mode=root",
            *argv[1:],
        ]
    print(f"setup: {name}: making a {suite} build root ({', '.join(packages)})", flush=True)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = dest.parent / f"failed-{suite}.log"
            log.write_text(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("E:")] or lines[-1:] or ["?"]
            raise HarnessError(
                f"build root for {name} ({suite}) could not be made: {errors[0]} (log: {log})"
            )
        if not (tree / "usr/bin" / cc).exists():
            raise HarnessError(f"build root for {name} ({suite}) has no {cc}: not kept")
        atomic_write(tree / MARKER, f"{suite} {' '.join(packages)}\n")
        if dest.exists():  # no marker: an incomplete copy
            shutil.rmtree(dest)
        tree.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wrap(
    root: Path,
    argv: Sequence[str],
    cwd: Path,
    read_only: Sequence[Path] = (),
    writable: Sequence[Path] = (),
) -> list[str]:
    """`argv` run in build root `root` by bwrap, with host paths bound at the same
    paths (read-only or writable), starting in `cwd`."""
    cmd = ["bwrap", "--ro-bind", str(root / "usr"), "/usr", "--ro-bind", str(root / "etc"), "/etc"]
    for top in ("bin", "sbin", "lib", "lib64"):
        if (root / top).is_symlink():  # merged /usr
            cmd += ["--symlink", os.readlink(root / top), f"/{top}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--die-with-parent"]
    cmd += ["--setenv", "PATH", PATH]
    for path in read_only:
        cmd += ["--ro-bind", str(path), str(path)]
    for path in writable:
        cmd += ["--bind", str(path), str(path)]
    return [*cmd, "--chdir", str(cwd), "--", *argv]
