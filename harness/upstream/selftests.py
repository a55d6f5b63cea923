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

A directory of exported selftests (`klp-harness export kselftest`, `selftests --dir`)
runs the same way: its test-*.sh scripts and test_modules/*.c take the place of the
profile's own beside the profile's unmodified functions.sh (`exported_sources`).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from harness.errors import HarnessError, UsageError
from harness.files import discard, make_temp_dir, publish_file, verify_file
from harness.guest.shell import GuestLike, Shell
from harness.kernel.profiles import KernelProfile, cache_root
from harness.kernel.sources import SELFTESTS, LivepatchSources
from harness.modules.build import build_sources
from harness.modules.kbuild import failure_line
from harness.modules.ko import declares_livepatch
from harness.modules.strip import without_debug_info
from harness.report.ktap import KtapTest, ktap_document

GUEST_DIR = "/root/livepatch-selftests"
SCRIPT_TIMEOUT = 900.0
CASE_RE = re.compile(r"TEST: (.+?) \.\.\. (ok|not ok)")


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


# What an exported directory keeps of the profile's selftests: the helpers its scripts
# source, and the runner's settings.
UPSTREAM_FILES = ("functions.sh", "settings", "config")
EXPORTED_MODULES = "test_modules"
# Marks a tree of exported selftests (exported_sources), whose scripts check the kernel
# log for warnings themselves: a bug they reproduce may WARN.
EXPORTED_MARK = ".exported"
# The console shows only emergencies and alerts (an Oops's BUG line, a panic) while
# exported scripts run: a WARN they check for is theirs to see, not the crash
# watcher's (which would take the guest away from the script running).
QUIET_CONSOLE = "dmesg -n 2"
TAINT_WARN = 1 << 9  # kernel/panic.c: TAINT_WARN, 'W'


def exported_sources(sources: LivepatchSources, directory: Path) -> LivepatchSources:
    """The profile's selftests with the exported scripts and modules of `directory`
    in place of its own: a tree in the cache (keyed by every file's content, made in
    a scratch directory and renamed into place) whose Makefile lists the exported
    scripts as TEST_PROGS and no programs to build."""
    scripts = sorted(directory.glob("test-*.sh"))
    modules = sorted((directory / EXPORTED_MODULES).glob("test_klp_*.c"))
    if not scripts:
        raise UsageError(f"--dir {directory}: no test-*.sh scripts (klp-harness export kselftest)")
    files = {f"{SELFTESTS}/{name}": sources.scripts_dir / name for name in UPSTREAM_FILES}
    files = {rel: path for rel, path in files.items() if path.is_file()}
    files.update({f"{SELFTESTS}/{path.name}": path for path in scripts})
    files.update({f"{SELFTESTS}/{EXPORTED_MODULES}/{path.name}": path for path in modules})
    texts = {rel: path.read_bytes() for rel, path in files.items()}
    makefile = "TEST_PROGS := " + " ".join(path.name for path in scripts) + "\n"
    texts[f"{SELFTESTS}/Makefile"] = makefile.encode()
    texts[f"{SELFTESTS}/{EXPORTED_MARK}"] = str(directory).encode()
    digest = hashlib.sha256()
    for rel in sorted(texts):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(texts[rel]).digest())
    parent = cache_root() / "selftests" / "exported"
    dest = parent / digest.hexdigest()[:32]
    if not (dest / SELFTESTS / "Makefile").is_file():
        stage = make_temp_dir(parent, "stage")
        try:
            (stage / SELFTESTS / EXPORTED_MODULES).mkdir(parents=True)
            for rel, data in texts.items():
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                (stage / rel).write_bytes(data)
            if dest.exists():  # incomplete: from a copy that was not atomic
                discard(dest, parent)
            stage.rename(dest)
        except OSError:
            shutil.rmtree(stage, ignore_errors=True)
            if not (dest / SELFTESTS / "Makefile").is_file():
                raise
    return LivepatchSources(dest)


def build_modules(sources: LivepatchSources, profile: KernelProfile) -> list[Path]:
    """Build every test_klp_*.c against the profile, unmodified, through the module
    build every other module takes (harness.modules.build: cached, verified, a
    kernel newer than the host's built in its build root)."""
    names = sorted(p.stem for p in sources.modules_dir.glob("test_klp_*.c"))
    texts = {name: (sources.modules_dir / f"{name}.c").read_text() for name in names}
    livepatch = [name for name, text in texts.items() if declares_livepatch(text)]
    result = build_sources(texts, profile, livepatch, jobs=2)
    return [result.modules[name] for name in names]


def build_programs(sources: LivepatchSources) -> list[Path]:
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
    guest: GuestLike, sources: LivepatchSources, kos: list[Path], programs: list[Path]
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
        if (sources.scripts_dir / EXPORTED_MARK).is_file():
            unpack += f" && {QUIET_CONSOLE}"
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


def kernel_warned(guest: Shell) -> bool:
    """Whether the guest's kernel has warned (taint W): an exported script that
    reproduces a bug may leave it hurt, and the next script gets a new guest."""
    out = guest.run("read -r t < /proc/sys/kernel/tainted; echo $t", check=True).stdout
    return bool(int(out.strip() or 0) & TAINT_WARN)


def parse_cases(script: str, output: str) -> list[CaseResult]:
    return [CaseResult(script, m.group(1), m.group(2) == "ok") for m in CASE_RE.finditer(output)]


def ktap(results: list[ScriptResult]) -> str:
    """KTAP v1, one subtest per script and one line per case (harness.report.ktap)."""
    return ktap_document([_ktap_test(script) for script in results])


def _ktap_test(script: ScriptResult) -> KtapTest:
    ok = script.exit_code == 0 and all(c.passed for c in script.cases)
    return KtapTest(
        f"selftests: livepatch: {script.script}",
        ok,
        diagnostics=() if ok else tuple(script.output.splitlines()[-20:]),
        subtests=tuple(KtapTest(case.name, case.passed) for case in script.cases),
    )


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        _failed(cmd, proc.stdout + proc.stderr, cwd)


def _failed(cmd: list[str], output: str, log_dir: Path) -> NoReturn:
    """Raise the one-line error of a failed tool: its error line and the saved log."""
    log = log_dir / "selftests-build.log"
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    raise HarnessError(f"`{' '.join(cmd[:3])} ...` failed: {failure_line(output, [])} (log: {log})")
