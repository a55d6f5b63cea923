"""Bad input and hostile environments at the command line: one line on stderr, the
right exit code, never a traceback; checked before any build or guest."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.commands import model as model_command
from harness.commands.common import check_writable
from harness.errors import UsageError
from harness.kernel import kconfig
from tests.kernel.test_kconfig import COMPLETE
from tests.scenario.test_loader import GOOD

REPO = Path(__file__).resolve().parents[2]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("klp-harness: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    return path


# ---- check_writable ----------------------------------------------------------------------


def test_writable_dir_leaves_no_trace(tmp_path: Path) -> None:
    check_writable(tmp_path / "results" / "deeper", "--results")
    check_writable(tmp_path, "--results")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "option", "is_file", "expected"),
    [
        (lambda t: t / "file", "--results", False, "exists and is not a directory"),
        (lambda t: t / "file" / "sub", "--results", False, "/file is not a directory"),
        (lambda t: t, "--junit", True, "is a directory"),
        (lambda t: Path("/proc/klp-results"), "--results", False, "cannot create files in /proc"),
        (lambda t: Path("/proc/self/x.xml"), "--junit", True, "cannot create files in /proc/self"),
    ],
)
def test_unwritable_outputs_are_one_line(
    tmp_path: Path, make: object, option: str, is_file: bool, expected: str
) -> None:
    (tmp_path / "file").write_text("")
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(UsageError) as info:
        check_writable(path, option, is_file=is_file)
    message = str(info.value)
    assert message.startswith(f"{option} {path}: ") and expected in message
    assert "\n" not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_dir(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="Permission denied"):
            check_writable(tmp_path / "results", "--results")
    finally:
        tmp_path.chmod(0o700)


# ---- render -o -----------------------------------------------------------------------------


def test_render_onto_an_existing_file(
    tmp_path: Path, spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out"
    target.write_text("keep me")
    assert cli_main(["render", str(spec), "-o", str(target)]) == 2
    assert one_line_error(capsys).endswith(f"-o {target}: exists and is not a directory")
    assert target.read_text() == "keep me"


def test_render_under_proc(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["render", str(spec), "-o", "/proc/klp-src"]) == 2
    assert "cannot create files in /proc" in one_line_error(capsys)


def test_render_into_a_new_dir_works(tmp_path: Path, spec: Path) -> None:
    assert cli_main(["render", str(spec), "-o", str(tmp_path / "src")]) == 0
    assert (tmp_path / "src" / "Kbuild").is_file()


# ---- scenario files ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "{a=" * 5000 + "1" + "}" * 5000])
def test_deeply_nested_toml_is_one_line(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text(f'description = "deep"\nsteps = ["x"]\nvalue = {value}\n')
    assert cli_main(["model", str(deep)]) == 2
    assert one_line_error(capsys) == f"klp-harness: error: {deep}: file: nested too deeply to read"


def test_deep_dotted_key_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "dotted.toml"
    deep.write_text('steps = ["x"]\ndescription.' + ".".join(["a"] * 5000) + " = 1\n")
    assert cli_main(["model", str(deep)]) == 2
    one_line_error(capsys)


# ---- options -------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", ["-1", "0", "x", "1.5"])
def test_build_jobs_must_be_positive(
    spec: Path, jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["build", str(spec), "-j", jobs])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument -j/--jobs:" in err and "Report bugs" not in err


# ---- the CLI edge itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (PermissionError(13, "Permission denied", "/x/results"), "/x/results: Permission denied"),
        (OSError(28, "No space left on device"), "No space left on device"),
        (OSError(18, "Invalid cross-device link", "/a", None, "/b"), "/a -> /b: Invalid cross"),
        (OSError("plain"), "plain"),
    ],
)
def test_any_os_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    spec: Path,
    capsys: pytest.CaptureFixture[str],
    error: OSError,
    line: str,
) -> None:
    def failing(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(model_command, "main", failing)
    assert cli_main(["model", str(spec)]) == 3  # the host failed, not the kernel
    assert one_line_error(capsys).startswith(f"klp-harness: error: {line}")


SLOW = """
import sys, time
from harness import cli
from harness.commands import model
def slow(args):
    print("ready", flush=True)
    try:
        time.sleep(60)
    finally:
        print("cleaned up", flush=True)
    return 0
model.main = slow
sys.exit(cli.main(["model", sys.argv[1]]))
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_termination_signal_is_one_line_and_128_plus_n(spec: Path, signum: int, code: int) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW, str(spec)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    time.sleep(0.1)
    child.send_signal(signum)
    out, err = child.communicate(timeout=30)
    assert child.returncode == code
    assert out == "cleaned up\n"  # finally blocks ran
    assert err == f"klp-harness: terminated by {signal.Signals(signum).name}\n"


BROKEN_MAKEFILE = """\
modules:
\t@echo "make[1]: Entering directory '$(CURDIR)'"
\t@echo "  CC [M]  $(M)/klp_target.o"
\t@echo "./include/linux/list.h:5:10: fatal error: linux/container_of.h: No such file" >&2
\t@echo "compilation terminated." >&2
\t@echo "make[1]: Leaving directory '$(CURDIR)'"
\t@exit 2
"""


def test_broken_kernel_dir_build_shows_the_compiler_error(
    tmp_path: Path,
    spec: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A user's tree whose build breaks: the line shown is the compiler's, not make's
    "Leaving directory" (real make on a stand-in tree)."""
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "linux"
    (tree / "include/config").mkdir(parents=True)
    (tree / "include/config/kernel.release").write_text("6.9.0-klp\n")
    (tree / "arch/x86/boot").mkdir(parents=True)
    (tree / "arch/x86/boot/bzImage").write_bytes(b"\0" * 64)
    (tree / ".config").write_text(COMPLETE)
    (tree / "Makefile").write_text(BROKEN_MAKEFILE)
    spec.write_text(GOOD.replace('kernels = ["debian-6.1"]\n', ""))  # meant for any kernel
    assert cli_main(["build", str(spec), "--kernel-dir", str(tree)]) == 3  # a broken build tree
    err = capsys.readouterr().err
    assert "compiling 2 module(s): lp, tgt" in err  # progress, then the error
    line = err.splitlines()[-1]
    assert line.startswith("klp-harness: error: ") and "Traceback" not in err
    assert "list.h:5:10: fatal error: linux/container_of.h: No such file" in line
    assert "Leaving directory" not in line
    assert "(build log: " in line
    assert line.endswith("recipe: " + str(kconfig.RECIPE) + ")")  # the tree broke, not ours
