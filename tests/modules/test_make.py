"""make as the build runs it: the line that explains a failure, and no make or
compiler left behind by an interrupted or killed harness (real make, no kernel)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.modules.kbuild import BuildTimeout, failure_line, run_make

BROKEN_HEADER = """\
make: Entering directory '/home/u/linux'
  CC [M]  /tmp/build-1/klp_target.o
In file included from ./include/linux/module.h:12,
./include/linux/list.h:5:10: fatal error: linux/container_of.h: No such file or directory
compilation terminated.
make[2]: *** [scripts/Makefile.build:250: /tmp/build-1/klp_target.o] Error 1
make[1]: *** [Makefile:2012: /tmp/build-1] Error 2
make: *** [Makefile:250: __sub-make] Error 2
make: Leaving directory '/home/u/linux'
"""
UNPREPARED = """\
make: Entering directory '/home/u/linux'

  ERROR: Kernel configuration is invalid.
         include/generated/autoconf.h or include/config/auto.conf are missing.

make[1]: *** [Makefile:750: include/config/auto.conf] Error 1
make: Leaving directory '/home/u/linux'
"""
OWN_ERROR = """\
/tmp/build-1/klp_target.c:28:5: error: expected ';' before '}' token
make[2]: *** [scripts/Makefile.build:250: /tmp/build-1/klp_target.o] Error 1
make: Leaving directory '/home/u/linux'
"""


@pytest.mark.parametrize(
    ("log", "line"),
    [
        (BROKEN_HEADER, "./include/linux/list.h:5:10: fatal error: linux/container_of.h: No such"),
        (UNPREPARED, "ERROR: Kernel configuration is invalid."),
        (OWN_ERROR, "klp_target.c:28:5: error: expected ';' before '}' token"),
        ("make: *** No rule to make target 'modules'.  Stop.\n", "make: *** No rule to make"),
        ("make: Leaving directory '/x'\n", "make: Leaving directory '/x'"),
        ("", "no output"),
    ],
)
def test_failure_line_is_the_reason_not_make_leaving(log: str, line: str) -> None:
    assert failure_line(log, ["klp_target"]).startswith(line)


def test_run_make_captures_status_and_output(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("all:\n\t@echo out; echo err >&2; exit 3\n")
    status, out = run_make(["make", "-s", "-C", str(tmp_path)], tmp_path)
    assert status == 2 and "out" in out and "err" in out


CHILD = """
import sys
from pathlib import Path
from harness.modules.kbuild import run_make
run_make(["make", "-s", "-C", sys.argv[1]], Path(sys.argv[1]))
"""


def pid_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_killed_harness_leaves_no_make_or_compiler(tmp_path: Path) -> None:
    """SIGKILL of the harness mid-build: make gets SIGTERM (parent-death signal) and
    passes it to its recipe, so nothing keeps running."""
    (tmp_path / "Makefile").write_text("all:\n\t@echo $$$$ > recipe.pid; exec sleep 60\n")
    harness = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)])
    pid_file = tmp_path / "recipe.pid"
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "make never started its recipe"
        time.sleep(0.05)
    recipe = int(pid_file.read_text())
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    assert pid_gone(recipe), "the recipe outlived the killed harness"


def test_a_build_that_outlasts_its_timeout_is_stopped_in_one_line(tmp_path: Path) -> None:
    """The whole process group goes: make and every compiler it started."""
    from harness.modules.kbuild import run_make

    script = "sleep 60 & echo $! > child; wait"
    started = time.monotonic()
    with pytest.raises(BuildTimeout, match=r"did not finish in 1 s: stopped"):
        run_make(["sh", "-c", script], tmp_path, timeout=1.0)
    assert time.monotonic() - started < 30
    child = int((tmp_path / "child").read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()
