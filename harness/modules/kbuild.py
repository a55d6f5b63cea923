"""make and the compiler against a kernel tree: how a module build is run, and what
its log says.

make runs in a process group of its own, killed as a whole if the harness is
interrupted or the build outlasts BUILD_TIMEOUT, and gets SIGTERM (which GNU make
passes on to its children) if the harness dies without a chance to clean up.  The
compiler stops at MAX_ERRORS errors: a body of thousands of bad statements fails in
seconds, not hours.  The compiler is the one the profile's kernel was built with, run
in the profile's build root if it has one (harness.kernel.buildroot).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

from harness.errors import HarnessError
from harness.host.reaper import pdeathsig_preexec, wait_group_gone
from harness.kernel import buildroot
from harness.kernel import profiles as kernels
from harness.kernel.profiles import KernelProfile

__all__ = [
    "BUILD_TIMEOUT",
    "MAX_ERRORS",
    "BuildTimeout",
    "MakeRunner",
    "compiler_for",
    "compiler_id",
    "compiler_include",
    "failure_line",
    "lines_about",
    "make_command",
    "run_make",
]

# (argv, cwd) -> (exit status, combined stdout/stderr)
MakeRunner = Callable[[Sequence[str], Path], tuple[int, str]]
BUILD_TIMEOUT = 900.0  # seconds for one make call (60 modules take ~1 min on 2 CPUs)
MAX_ERRORS = 50  # the compiler's -fmax-errors


class BuildTimeout(HarnessError):
    """make did not finish in time; it and every compiler it started were killed."""


def run_make(argv: Sequence[str], cwd: Path, timeout: float | None = None) -> tuple[int, str]:
    """Run make, capturing stdout and stderr together (the build log).

    In its own process group, so an interrupted build (Ctrl-C, SIGTERM) is killed
    with every compiler it started; SIGTERM on the harness's death (GNU make passes
    it on to its children), so even a SIGKILLed harness leaves no make behind."""
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            process_group=0,
            preexec_fn=pdeathsig_preexec(signal.SIGTERM),
        )
    except FileNotFoundError as exc:
        raise HarnessError(f"cannot run {argv[0]}: {exc.strerror} (install make)") from None
    limit = BUILD_TIMEOUT if timeout is None else timeout
    try:
        out, _ = proc.communicate(timeout=limit)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_group_gone(proc.pid)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BuildTimeout(
                f"`{' '.join(argv[:1])} ... {argv[-1]}` did not finish in {limit:.0f} s: "
                "stopped, with every compiler it started"
            ) from None
        raise
    return proc.returncode, out


def compiler_for(profile: KernelProfile) -> str:
    """The C compiler the profile's kernel was built with (CONFIG_CC_VERSION_TEXT's
    first word, e.g. `x86_64-linux-gnu-gcc-12`) if installed, else `gcc`.  Using the
    same one avoids kbuild's "compiler differs" warning and plugin/flag mismatches.
    A kernel built in a build root (harness.kernel.buildroot) gets its own, from the root."""
    in_root = buildroot.cc_for(profile)
    if in_root is not None:
        return in_root
    try:
        text = kernels.read_config(profile.config).get("CONFIG_CC_VERSION_TEXT", "")
    except OSError:
        text = ""
    words = text.strip('"').split()
    if words and shutil.which(words[0]):
        return words[0]
    return "gcc"


@cache
def compiler_id(cc: str, root: Path | None = None) -> str:
    """First line of `cc --version` (run in build root `root`, if given): part of the
    cache key."""
    try:
        out = _run_compiler(cc, root, "--version")
    except FileNotFoundError:
        raise HarnessError(f"C compiler {cc} not found (install gcc)") from None
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
        raise HarnessError(f"C compiler {cc} does not run: {tail[0]}")
    return (out.stdout.splitlines() or [cc])[0]


def _run_compiler(cc: str, root: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`cc ARGS`, in build root `root` if given (its compiler needs the root's libc)."""
    argv = [cc, *args]
    if root is not None:
        argv = buildroot.wrap(root, argv, Path("/"))
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def make_command(
    profile: KernelProfile,
    work: Path,
    cc: str,
    jobs: int,
    root: Path | None,
    targets: Sequence[str] = ("modules",),
) -> list[str]:
    """`make ... modules` building the modules in `work` against `profile` (or other
    kbuild `targets`), in build root `root` if the profile needs one (its tree
    read-only, `work` writable)."""
    argv = ["make", "-C", str(profile.build_dir), f"M={work}", f"CC={cc}", f"-j{jobs}",
            f"KCFLAGS=-fmax-errors={MAX_ERRORS}", *targets]  # fmt: skip
    if root is None:
        return argv
    named = profile.name.startswith("dir:")
    tree = profile.build_dir if named else kernels.cache_root() / "kernels" / profile.name
    return buildroot.wrap(root, argv, work, read_only=[tree], writable=[work])


@cache
def compiler_include(cc: str, root: Path | None = None) -> str:
    """The compiler's own header directory (`cc -print-file-name=include`)."""
    try:
        out = _run_compiler(cc, root, "-print-file-name=include")
    except OSError:
        return "/nonexistent"
    found = out.stdout.strip()
    return found if found.startswith("/") else "/nonexistent"


# ---- reading its log ---------------------------------------------------------------


def lines_about(log: str, name: str, word: str) -> list[str]:
    """Compiler/modpost lines about module `name` containing `word` (error, warning)."""
    pattern = re.compile(rf"(^|[/\s\[]){re.escape(name)}\.(c|o|ko|mod\.c)\b")
    return [
        line
        for line in log.splitlines()
        if word in line.lower() and pattern.search(line) and not _MAKE_NOISE.search(line)
    ]


# make's own bookkeeping ("Leaving directory", "*** [target] Error 2"): never the
# reason a build failed, only the echo of it.
_MAKE_NOISE = re.compile(r"make(\[\d+\])?: (Entering|Leaving) directory|\*\*\* \[.*\] Error \d+$")
_ERROR = re.compile(r"(?i)\berror\b|\*\*\*|No rule to make target")


def failure_line(log: str, names: Sequence[str]) -> str:
    """The line of a failed build's log that says why: a compiler error about one of
    `names`, else the first error line (a broken kernel tree: "ERROR: Kernel
    configuration is invalid", a missing header), else the last line that is not
    make's "Leaving directory"."""
    for name in names:
        errors = lines_about(log, name, "error")
        if errors:
            first = errors[0].strip()
            return re.sub(r"^\S*/(?=" + re.escape(name) + r"\.)", "", first)
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not _MAKE_NOISE.search(ln)]
    errors = [ln for ln in useful if _ERROR.search(ln)]
    if errors:
        return errors[0]
    return useful[-1] if useful else (lines[-1] if lines else "no output")
