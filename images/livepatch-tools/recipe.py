"""Livepatches made by the real build tools from the diffs beside this file, against a
kernel tree the harness boots (`--kernel-dir`), and checked like any `.ko`.

    .venv/bin/python images/livepatch-tools/recipe.py [STEP ...]     (default: all)

Steps, each cached under <cache>/livepatch-tools/ and timed into times.json there:

  klp-root     a trixie build root (mmdebstrap, harness.kernel.buildroot) with gcc-12
               and what a kernel tree, objtool's klp support and klp-build need; gcc-12,
               the major version of the host's compiler, because the harness builds a
               --kernel-dir tree's modules (its layout probe, generated patches) on the
               host with the host's gcc, which must know the tree's flags (a gcc-14
               tree passes -fmin-function-alignment, unknown to gcc-12)
  source       Debian's linux-source-7.3 (through the debian-7.3 profile's private apt
               configuration), unpacked to linux-7.3/ and configured: x86_64_defconfig,
               docs/klp-harness.config, then tools.config (KLP_BUILD, debug information,
               no IBT, the livepatch samples as modules); made again, with everything
               built from it, when a fragment or the compiler changes
  klp-build    scripts/livepatch/klp-build of each diff (diffs/*.patch, one livepatch
               each): the first builds the original tree, then the patched objects; the
               next start at the patched build (-S 2, the original kept by --keep-tmp;
               mod-install/ moved aside meanwhile: klp-build takes every .ko below the
               tree for one of its own);
               then the tree's bzImage and modules with klp-build's own make variables
               (so nothing is compiled again) and modules_install: the tree the guest
               boots is the one the livepatches were diffed against
  kpatch-tools Debian's kpatch-build (sid's package, through the same private apt
               configuration) unpacked to kpatch/: it finds its tools beside itself and
               runs in the trixie root (libc 2.41 >= the 2.38 it needs) with the
               tree's compiler
  kpatch-build kpatch-build of each diff against a copy of the source with the same
               .config, the tree's vmlinux given (-v): kpatch-build builds the original
               and the patched kernel again with its compiler wrapper; a diff with a
               `<diff>.kpatch-build-fails` file beside it is known to fail (the file
               says why, and what kpatch-build's log must say): its failure is
               recorded, not raised, and not tried again with the same kpatch-build
  check        `klp-harness check --kernel-dir` of each livepatch (the module diff's
               with the tree's livepatch-shadow-mod.ko), with `<diff>-LOADED.test` as
               its check command where there is one (kpatch's convention), and a
               scenario of it replaced by a generated cumulative patch (scenarios/)

Every build runs at `nice -n 19` with -j$(nproc).  The outputs are
<cache>/livepatch-tools/out/<tool>/livepatch-<diff>.ko.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.files import atomic_write
from harness.kernel import buildroot
from harness.kernel.debian import apt_for
from harness.kernel.profiles import cache_root

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DIFFS = sorted((HERE / "diffs").glob("*.patch"))
SERIES = "7.3"
CC = "gcc-12"
BASE_PACKAGES = (
    "gcc-12", "make", "bc", "bison", "flex", "libelf-dev", "libssl-dev", "libxxhash-dev",
    "pahole", "patchutils", "patch", "cpio", "kmod", "perl", "python3", "xz-utils",
    "zstd", "rsync", "gawk", "elfutils", "file", "diffutils", "findutils", "binutils",
)  # fmt: skip
# klp-build's own make variables (scripts/livepatch/klp-build: build_kernel)
KLP_MAKE = ("KBUILD_MODPOST_WARN=1", "KLP_SYMIDS=1", "KCFLAGS=-ffunction-sections -fdata-sections")
JOBS = f"-j{os.cpu_count() or 1}"
# What a built tree holds beyond its configured source (left out of kpatch-build's copy)
BUILD_OUTPUTS = (
    "*.o", "*.ko", "*.a", "*.mod", "*.mod.c", ".*.cmd", "/vmlinux", "/vmlinux.*", "klp-tmp",
    "mod-install", "modules.order", "Module.symvers", ".tmp_*",
)  # fmt: skip


def work() -> Path:
    path = cache_root() / "livepatch-tools"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tree() -> Path:
    return work() / f"linux-{SERIES}"


def record(step: str, seconds: float, **extra: object) -> None:
    """Keep a step's wall time (and what it made) in times.json."""
    path = work() / "times.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[step] = {"seconds": round(seconds, 1), **extra}
    atomic_write(path, json.dumps(times, indent=2, sort_keys=True) + "\n")
    print(f"livepatch-tools: {step}: {seconds / 60:.1f} min", flush=True)


def run_in(
    root: Path,
    argv: Sequence[str],
    cwd: Path,
    writable: Sequence[Path],
    read_only: Sequence[Path] = (),
) -> None:
    """`argv` in build root `root` at nice 19, `gcc` being gcc-12, HOME in the cache and
    the diffs read-only."""
    home = work() / "home"
    home.mkdir(exist_ok=True)
    cmd = buildroot.wrap(root, argv, cwd, read_only=[HERE, *read_only], writable=[*writable, home])
    at = cmd.index("--chdir")
    cmd[at:at] = [
        "--dir", "/opt/cc",
        "--symlink", f"/usr/bin/{CC}", "/opt/cc/gcc",
        "--symlink", f"/usr/bin/{CC}", "/opt/cc/cc",
        "--setenv", "PATH", f"/opt/cc:{buildroot.PATH}",
        "--setenv", "HOME", str(home),
    ]  # fmt: skip
    print(f"livepatch-tools: $ {' '.join(argv)}", flush=True)
    subprocess.run(["nice", "-n", "19", *cmd], check=True)


def klp_root() -> Path:
    return buildroot.ensure("trixie", sorted(BASE_PACKAGES), "klp-build", CC)


def kpatch_tools() -> Path:
    """Debian's kpatch-build, unpacked: <dir>/usr/bin/kpatch-build."""
    dest = work() / "kpatch"
    program = dest / "usr/bin/kpatch-build"
    if program.is_file():
        return program
    apt = apt_for(f"debian-{SERIES}")  # trixie-backports and sid
    apt.ensure_lists()
    download = work() / "download-kpatch"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir()
    apt.run(["apt-get", "download", "-q", "kpatch-build"], download)
    deb = next(download.glob("*.deb"))
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    shutil.rmtree(download)
    return program


def timed(step: str, action: Callable[[], object]) -> None:
    started = time.monotonic()
    made = action()
    record(step, time.monotonic() - started, made=str(made) if made is not None else "")


def configuration() -> str:
    """What the tree is made of beyond its source: the configuration fragments and the
    compiler. A tree, its kpatch-build copy and every livepatch diffed against it are
    made again when this changes."""
    digest = hashlib.sha256(f"{SERIES} {CC}\n".encode())
    for fragment in (REPO / "docs/klp-harness.config", HERE / "tools.config"):
        digest.update(fragment.read_bytes())
    return digest.hexdigest()


def source() -> Path:
    dest = tree()
    made_as = dest / ".klp-configuration"
    if made_as.is_file() and made_as.read_text() == configuration():
        return dest
    for stale in (dest, work() / f"kpatch-src-{SERIES}", work() / "out"):
        if stale.exists():
            print(f"livepatch-tools: {stale} was made for another configuration", flush=True)
            shutil.rmtree(stale)
    apt = apt_for(f"debian-{SERIES}")
    apt.ensure_lists()
    download = work() / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir()
    apt.run(["apt-get", "download", "-q", f"linux-source-{SERIES}"], download)
    deb = next(download.glob("*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), "x"], cwd=download, check=True)
    tarball = next((download / "x/usr/src").glob("linux-source-*.tar.xz"))
    with tarfile.open(tarball) as tar:
        tar.extractall(download / "tree", filter="data")
    shutil.rmtree(dest, ignore_errors=True)
    (download / "tree" / tarball.name.removesuffix(".tar.xz")).rename(dest)
    shutil.rmtree(download)
    root = klp_root()
    fragments = [REPO / "docs/klp-harness.config", HERE / "tools.config"]
    for fragment in fragments:
        shutil.copyfile(fragment, dest / f".klp-{fragment.name}")
    run_in(root, ["make", "x86_64_defconfig"], dest, [dest])
    merge = ["scripts/kconfig/merge_config.sh", "-m", ".config"]
    run_in(root, [*merge, *(f".klp-{f.name}" for f in fragments)], dest, [dest])
    run_in(root, ["make", "olddefconfig"], dest, [dest])
    kpatch_source()
    atomic_write(made_as, configuration())
    return dest


def made_from(ko: Path, diff: Path) -> bool:
    """Whether `ko` was built from `diff` as it is now (its digest kept beside it)."""
    stamp = ko.with_suffix(".diff-sha256")
    digest = hashlib.sha256(diff.read_bytes()).hexdigest()
    return ko.is_file() and stamp.is_file() and stamp.read_text() == digest


def stamp(ko: Path, diff: Path) -> None:
    atomic_write(ko.with_suffix(".diff-sha256"), hashlib.sha256(diff.read_bytes()).hexdigest())


def out(tool: str) -> Path:
    path = work() / "out" / tool
    path.mkdir(parents=True, exist_ok=True)
    return path


def klp_build() -> None:
    root, src = klp_root(), source()
    # the tree's kbuild tools are linked in the root: the harness builds there too
    atomic_write(src / buildroot.TREE_ROOT, f"{root}\n")
    installed, aside = src / "mod-install", src / ".mod-install.klp-build"
    built = False
    for diff in DIFFS:
        ko = out("klp-build") / f"livepatch-{diff.stem}.ko"
        if made_from(ko, diff):
            continue
        argv = ["./scripts/livepatch/klp-build", JOBS, "--keep-tmp", "-o", str(ko), str(diff)]
        if (src / "klp-tmp/1-orig/.complete").is_file():  # the original tree is kept
            argv[2:2] = ["-S", "2"]
        if installed.is_dir():  # klp-build takes every .ko below the tree for its own
            installed.rename(aside)
        started = time.monotonic()
        try:
            run_in(root, argv, src, [src, out("klp-build")])
        finally:
            if aside.is_dir():
                aside.rename(installed)
        stamp(ko, diff)
        record(f"klp-build {diff.stem}", time.monotonic() - started, made=str(ko))
        built = True
    if built or not installed.is_dir():  # the tree's objects are the last patched build's
        started = time.monotonic()
        run_in(root, ["make", JOBS, *KLP_MAKE, "bzImage", "modules"], src, [src])
        shutil.rmtree(installed, ignore_errors=True)
        install = ["make", "modules_install", "INSTALL_MOD_PATH=mod-install"]
        run_in(root, install, src, [src])
        record("tree bzImage+modules_install", time.monotonic() - started, made=str(src))


def kpatch_source(refresh: bool = False) -> Path:
    """The configured source without build outputs, for kpatch-build, which builds the
    tree it is given: made by `source` before anything is built; `refresh`: its
    sources made the tree's again, its build outputs kept (a kpatch-build that failed
    with --skip-cleanup leaves its diff applied)."""
    copy = work() / f"kpatch-src-{SERIES}"
    if refresh or not (copy / ".config").is_file():
        src = tree()
        excluded = [f"--exclude={pattern}" for pattern in BUILD_OUTPUTS]
        argv = ["rsync", "-a", "--delete", "--out-format=%n", *excluded, f"{src}/", f"{copy}/"]
        copy.mkdir(exist_ok=True)
        wrapped = buildroot.wrap(klp_root(), argv, copy, read_only=[src], writable=[copy])
        out = subprocess.run(wrapped, check=True, capture_output=True, text=True).stdout
        # a restored source keeps the tree's older time: newer than the objects built
        # from the diff, so kpatch-build's original build compiles it again
        for name in out.splitlines():
            if (copy / name).is_file():
                os.utime(copy / name)
    return copy


def kpatch_log() -> Path:
    """kpatch-build's build.log (its HOME is the cache's home/)."""
    return work() / "home/.kpatch/build.log"


def known_failure(diff: Path) -> str | None:
    """Why kpatch-build fails on `diff`, if it is known to and its log says so: the
    `<diff>.kpatch-build-fails` file's first line, when its `log:` line is in
    kpatch-build's build.log (any other failure is raised)."""
    known = diff.with_name(f"{diff.stem}.kpatch-build-fails")
    if not known.is_file():
        return None
    lines = known.read_text().splitlines()
    wanted = [line.removeprefix("log: ") for line in lines if line.startswith("log: ")]
    log = kpatch_log()
    text = log.read_text(errors="replace") if log.is_file() else ""
    return lines[0] if wanted and all(w in text for w in wanted) else None


def failure_key(diff: Path, program: Path) -> str:
    """What a known failure was seen with: the diff, its -fails file and kpatch-build
    itself (a newer kpatch-build is tried again).  Each try rebuilds the original
    kernel: an hour of these two CPUs."""
    digest = hashlib.sha256(diff.read_bytes())
    digest.update(diff.with_name(f"{diff.stem}.kpatch-build-fails").read_bytes())
    digest.update(program.read_bytes())
    return digest.hexdigest()


def kpatch_build() -> None:
    root, src, program = klp_root(), source(), kpatch_tools()
    copy = kpatch_source()
    # the original kernel's vmlinux: klp-build's copy of it while its tree holds the
    # patched build, the tree's own once rebuilt
    vmlinux = src / "klp-tmp/1-orig/vmlinux"
    vmlinux = vmlinux if vmlinux.is_file() else src / "vmlinux"
    for diff in DIFFS:
        dest = out("kpatch-build")
        ko = dest / f"livepatch-{diff.stem}.ko"
        if made_from(ko, diff):
            continue
        failed = ko.with_suffix(".known-failure")
        if failed.is_file() and failed.read_text() == failure_key(diff, program):
            print(f"livepatch-tools: kpatch-build {diff.stem} fails, as known, with this "
                  f"kpatch-build: not tried again (remove {failed} to)", flush=True)  # fmt: skip
            continue
        argv = [str(program), "-s", str(copy), "-c", str(copy / ".config"),
                "-v", str(vmlinux), JOBS, "-n", f"livepatch-{diff.stem}",
                "-o", str(dest), "--skip-cleanup", str(diff)]  # fmt: skip
        kpatch_source(refresh=True)
        kpatch_log().unlink(missing_ok=True)  # kept across runs: a known failure is this run's
        started = time.monotonic()
        try:
            run_in(root, argv, dest, [copy, dest], read_only=[src, program.parents[2]])
        except subprocess.CalledProcessError:
            why = known_failure(diff)
            if why is None:
                raise
            print(f"livepatch-tools: kpatch-build {diff.stem} fails, as known: {why}")
            atomic_write(failed, failure_key(diff, program))
            record(f"kpatch-build {diff.stem}", time.monotonic() - started, failed=why)
            continue
        if diff.with_name(f"{diff.stem}.kpatch-build-fails").is_file():
            print(f"livepatch-tools: kpatch-build {diff.stem} builds now: remove its -fails file")
        stamp(ko, diff)
        record(f"kpatch-build {diff.stem}", time.monotonic() - started, made=str(dest))


def scenario(ko: Path, name: str, target: Path | None, loaded: str) -> str:
    """A scenario of the livepatch `ko` (module `name`, patching module `target` if
    any): loaded (checked before and after), replaced by a generated cumulative patch,
    which is disabled; everything unloaded."""
    check = [f"check {name}"] if loaded else []
    first = ["load livepatch_shadow_mod"] if target else []
    steps = [
        *first,
        *check,
        f"load {name}",
        *check,
        "load klp_tools_cumulative",
        *check,
        "disable klp_tools_cumulative",
        "unload klp_tools_cumulative",
        f"unload {name}",
        *[f"unload {step.split()[1]}" for step in reversed(first)],
    ]
    lines = [
        f"description = {json.dumps(f'{ko.name} replaced by a generated cumulative patch.')}",
        f"steps = {json.dumps(steps)}",
    ]
    if target:
        lines += ["[[target]]", f"ko = {json.dumps(str(target))}"]
    lines += ["[[patch]]", f"ko = {json.dumps(str(ko))}"]
    if loaded:
        lines.append(f"check = {json.dumps(loaded)}")
    lines += [
        "[[patch]]",
        'name = "klp_tools_cumulative"',
        "replace = true",
        "[[patch.object]]",
        'name = "vmlinux"',
        'funcs = ["uptime_proc_show"]',
    ]
    return "\n".join(lines) + "\n"


def check() -> None:
    """Each livepatch through `check` (with its LOADED test) and through a scenario
    with a generated cumulative patch on top, on the tree's guest."""
    src = tree()
    klp_harness = str(REPO / ".venv/bin/klp-harness")
    failed = 0
    for tool in ("klp-build", "kpatch-build"):
        for diff in DIFFS:
            ko = work() / "out" / tool / f"livepatch-{diff.stem}.ko"
            if not ko.is_file():
                print(f"livepatch-tools: no {ko} (its build has not run)", flush=True)
                continue
            name = f"livepatch_{diff.stem}".replace("-", "_")
            target = src / "samples/livepatch/livepatch-shadow-mod.ko"
            target_if = target if "shadow" in diff.stem else None
            loaded_file = diff.with_name(f"{diff.stem}-LOADED.test")
            loaded = loaded_file.read_text() if loaded_file.is_file() else ""
            argv = [klp_harness, "check", "--kernel-dir", str(src)]
            argv += [str(target), str(ko)] if target_if else [str(ko)]
            argv += ["--check", f"{name}={loaded}"] if loaded else []
            toml = work() / "scenarios" / f"{tool}-{diff.stem}.toml"
            toml.parent.mkdir(exist_ok=True)
            atomic_write(toml, scenario(ko, name, target_if, loaded))
            for what, command in (
                ("check", argv),
                ("scenario", [klp_harness, "run", "--kernel-dir", str(src), str(toml)]),
            ):
                started = time.monotonic()
                status = subprocess.run(command, check=False).returncode
                elapsed = time.monotonic() - started
                record(f"{what} {tool} {diff.stem}", elapsed, exit=status)
                failed += status != 0
    if failed:
        raise SystemExit(1)


STEPS: dict[str, Callable[[], object]] = {
    "klp-root": klp_root,
    "source": source,
    "klp-build": klp_build,
    "kpatch-tools": kpatch_tools,
    "kpatch-build": kpatch_build,
    "check": check,
}


def main(argv: list[str]) -> int:
    for step in argv or list(STEPS):
        if step not in STEPS:
            print(f"recipe.py: no step {step!r} (steps: {', '.join(STEPS)})", file=sys.stderr)
            return 2
        timed(step, STEPS[step])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
