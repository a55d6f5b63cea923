"""Run the kernel's own livepatch selftests, unmodified, in a guest.

The scripts (tools/testing/selftests/livepatch) and their test modules (lib/livepatch
in 6.1, the selftests' test_modules/ since 6.8) come from the profile's kernel source:
Debian's linux-source-<series> package (fetched like the profile: harness.kernel.debian), or
the user's tree.  The modules are built out of tree (CONFIG_TEST_LIVEPATCH is not set
in Debian's kernels; a kernel newer than the host's release in its build root),
installed under /lib/modules/<release>/extra, and each script runs with bash in the
guest.  Its `TEST: <name> ... ok|not ok` lines become one result per case.

What is built is cached like everything else (`harness.files`): built in a scratch
directory, checked, published by a rename with checksums beside each file, and
rebuilt when a cached file no longer matches them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from harness.errors import HarnessError
from harness.files import discard, make_temp_dir, publish_file, sweep_abandoned, verify_file
from harness.guest.shell import GuestLike, Shell
from harness.kernel.profiles import KernelProfile, cache_root, tree_identity
from harness.modules.strip import without_debug_info

SELFTESTS = "tools/testing/selftests/livepatch"
MODULE_DIRS = (f"{SELFTESTS}/test_modules", "lib/livepatch")
SAMPLES = "samples/livepatch"  # the kernel's sample livepatch modules (harness.upstream.samples)
GUEST_DIR = "/root/livepatch-selftests"
SCRIPT_TIMEOUT = 900.0
CASE_RE = re.compile(r"TEST: (.+?) \.\.\. (ok|not ok)")


@dataclass(frozen=True)
class SelftestSources:
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


@dataclass
class CaseResult:
    script: str
    name: str
    passed: bool


@dataclass
class ScriptResult:
    script: str
    exit_code: int
    seconds: float
    output: str
    cases: list[CaseResult] = field(default_factory=list)


def fetch_sources(profile: KernelProfile) -> SelftestSources:
    """The selftests of the profile's kernel: its tree, or Debian's linux-source."""
    if profile.name.startswith("dir:"):
        # An O= build directory holds no sources; kbuild links them as `source`.
        tree = profile.build_dir
        if not (tree / SELFTESTS).is_dir() and (tree / "source" / SELFTESTS).is_dir():
            tree = tree / "source"
        return SelftestSources(tree)
    dest = _cache_dir(profile)
    if _complete(dest):
        return SelftestSources(dest)
    from harness.kernel.debian import apt_for

    package = f"linux-source-{profile.series}"
    apt = apt_for(profile.name)  # the host's apt, or the profile's private configuration
    apt.ensure_lists()
    sweep_abandoned(cache_root(), "klp-fetch")
    tmp_path = make_temp_dir(cache_root(), "klp-fetch")
    try:
        apt.run(["apt-get", "download", "-q", package], tmp_path)
        deb = next(tmp_path.glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), "x"], tmp_path)
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
    return SelftestSources(dest)


def cached_sources(profile_name: str) -> SelftestSources | None:
    """The named profile's selftests if already fetched: cheap, never downloads (for
    listing the scripts, e.g. when pytest collects them)."""
    from harness.kernel.profiles import load_profile

    try:
        profile = load_profile(profile_name)
    except HarnessError:
        return None
    dest = _cache_dir(profile)
    return SelftestSources(dest) if _complete(dest) else None


def _cache_dir(profile: KernelProfile) -> Path:
    return cache_root() / "selftests" / f"linux-source-{profile.series}"


def _complete(dest: Path) -> bool:
    return (dest / SELFTESTS).is_dir() and (dest / SAMPLES).is_dir()


def build_modules(sources: SelftestSources, profile: KernelProfile) -> list[Path]:
    """Build every test_klp_*.c against the profile (cached per kernel release; a
    cached .ko that no longer matches its checksum or vermagic is rebuilt)."""
    from harness.kernel import buildroot
    from harness.modules.build import compiler_for, make_command, run_make
    from harness.modules.ko import check_ko

    identity = tree_identity(profile)  # a user's tree: one dir per build of it
    out = cache_root() / "selftests" / "build" / "-".join(filter(None, [profile.release, identity]))
    names = sorted(p.stem for p in sources.modules_dir.glob("test_klp_*.c"))
    kos = [out / f"{name}.ko" for name in names]
    if kos and all(_usable_ko(ko, profile) for ko in kos):
        return kos
    sweep_abandoned(out.parent, f".{profile.release}")
    work = make_temp_dir(out.parent, f".{profile.release}")
    try:
        for name in names:
            shutil.copy(sources.modules_dir / f"{name}.c", work)
        (work / "Kbuild").write_text("obj-m += " + " ".join(f"{n}.o" for n in names) + "\n")
        root = buildroot.root_for(profile)  # a kernel newer than the host's: its release's
        argv = make_command(profile, work, compiler_for(profile), 2, root)
        status, log = run_make(argv, work)
        if status != 0:
            _failed(argv, log, out.parent)
        for name in names:
            check_ko(work / f"{name}.ko", name, profile, livepatch=False)
        if out.exists():
            discard(out, out.parent)
        out.mkdir(parents=True)
        for ko in kos:
            publish_file(work / ko.name, ko)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return kos


def _usable_ko(ko: Path, profile: KernelProfile) -> bool:
    from harness.modules.ko import check_ko

    if not verify_file(ko):
        return False
    try:
        check_ko(ko, ko.stem, profile, livepatch=False)
    except HarnessError:
        return False
    return True


def build_programs(sources: SelftestSources) -> list[Path]:
    """User-space helpers the scripts call (TEST_GEN_FILES, e.g. test_klp-call_getpid)."""
    programs = []
    build = cache_root() / "selftests" / "build"
    for name in sources.makefile_list("TEST_GEN_FILES"):
        source = sources.scripts_dir / f"{name}.c"
        binary = build / name
        if not verify_file(binary):
            build.mkdir(parents=True, exist_ok=True)
            partial = build / f".{name}.partial"
            _run(["gcc", "-O2", "-o", str(partial), str(source)], build)
            publish_file(partial, binary)
        programs.append(binary)
    return programs


def install(
    guest: GuestLike, sources: SelftestSources, kos: list[Path], programs: list[Path]
) -> None:
    """Put the modules (then depmod), the unmodified scripts and their programs in the
    guest.  They travel as one archive: a copy per file cost a round trip each, about
    2 s per guest for some 40 files, paid by every script's guest.  The modules travel
    without their debug information, as a scenario's do (runner.session)."""
    release = guest.run("uname -r", check=True).stdout.strip()
    extra, here = f"lib/modules/{release}/extra", GUEST_DIR.lstrip("/")
    with tempfile.TemporaryDirectory(prefix="klp-selftests-") as tmp:
        archive = Path(tmp) / "selftests.tar"
        with tarfile.open(archive, "w") as tar:
            for ko in kos:
                # 6.1's scripts modprobe from extra/; since 6.8 they insmod test_modules/*.ko
                small = without_debug_info(ko, Path(tmp))
                tar.add(small, arcname=f"{extra}/{ko.name}")
                tar.add(small, arcname=f"{here}/test_modules/{ko.name}")
            for path in sorted(sources.scripts_dir.iterdir()):
                if path.is_file():
                    tar.add(path, arcname=f"{here}/{path.name}")
            for program in programs:
                tar.add(program, arcname=f"{here}/{program.name}")
        unpack = (
            f"mkdir -p /{extra} {GUEST_DIR}/test_modules && busybox tar -x -C / && "
            f"chmod +x {GUEST_DIR}/* && depmod -a"
        )
        guest.feed(archive, unpack, check=True, timeout=60)


def run_script(guest: Shell, script: str) -> ScriptResult:
    started = time.monotonic()
    # Since 6.8 functions.sh skips everything unless $KDIR (default: the build dir,
    # which a guest has no use for) is a directory; the modules are prebuilt.
    result = guest.run(
        f"cd {GUEST_DIR} && KDIR=/lib/modules/$(uname -r) bash ./{script} 2>&1",
        timeout=SCRIPT_TIMEOUT,
    )
    seconds = time.monotonic() - started
    return ScriptResult(
        script, result.exit_code, seconds, result.stdout, parse_cases(script, result.stdout)
    )


def parse_cases(script: str, output: str) -> list[CaseResult]:
    return [CaseResult(script, m.group(1), m.group(2) == "ok") for m in CASE_RE.finditer(output)]


def ktap(results: list[ScriptResult]) -> str:
    """KTAP v1, one subtest per script and one line per case."""
    lines = ["KTAP version 1", f"1..{len(results)}"]
    for number, script in enumerate(results, 1):
        lines += ["    KTAP version 1", f"    1..{len(script.cases)}"]
        for case_number, case in enumerate(script.cases, 1):
            lines.append(f"    {'ok' if case.passed else 'not ok'} {case_number} {case.name}")
        ok = script.exit_code == 0 and all(c.passed for c in script.cases)
        if not ok:
            lines += [f"# {line}" for line in script.output.splitlines()[-20:]]
        lines.append(f"{'ok' if ok else 'not ok'} {number} selftests: livepatch: {script.script}")
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        _failed(cmd, proc.stdout + proc.stderr, cwd)


def _failed(cmd: list[str], output: str, log_dir: Path) -> NoReturn:
    """Raise the one-line error of a failed tool: its error line and the saved log."""
    from harness.modules.build import failure_line

    log = log_dir / "selftests-build.log"
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    raise HarnessError(f"`{' '.join(cmd[:3])} ...` failed: {failure_line(output, [])} (log: {log})")
