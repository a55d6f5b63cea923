"""`trigger` steps without a guest: parsing, the model's prediction and the parsing of
what the guest prints (counters before and after the command)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.model.predict import predict
from harness.runner.trigger import (
    RUN_COMMAND,
    command_data,
    parse_ran,
    setup_script,
    trigger_script,
    watched,
)
from harness.scenario.loader import load_scenario
from harness.scenario.step_types import Trigger, Watch, format_step

SCENARIO = """\
description = "Trigger."
steps = [
  "trigger 'cat /proc/version' vmlinux:version_proc_show=1 vmlinux:__do_sys_getpid",
  "load lp",
  "trigger 'cat /proc/version' vmlinux:version_proc_show=1 vmlinux:__do_sys_getpid",
  "disable lp",
  "trigger 'cat /proc/version' vmlinux:version_proc_show=1 vmlinux:__do_sys_getpid",
]

[[patch]]
name = "lp"

[[patch.object]]
name = "vmlinux"
funcs = [
  { name = "version_proc_show", body = '''
static int version_proc_show(void *m, void *v) { return 0; }
''' },
  "__do_sys_getpid",
]
"""


def scenario(tmp_path: Path, text: str = SCENARIO):  # type: ignore[no-untyped-def]
    path = tmp_path / "t.toml"
    path.write_text(text)
    return load_scenario(path)


def test_parse_and_format(tmp_path: Path) -> None:
    s = scenario(tmp_path)
    step = s.steps[0]
    assert step == Trigger(
        "cat /proc/version",
        (Watch("vmlinux", "version_proc_show", 1), Watch("vmlinux", "__do_sys_getpid")),
    )
    assert format_step(step) == (
        "trigger 'cat /proc/version' vmlinux:version_proc_show=1 vmlinux:__do_sys_getpid"
    )
    assert watched(s) == [("vmlinux", "version_proc_show"), ("vmlinux", "__do_sys_getpid")]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("trigger 'cat /proc/version'", "needs a command and at least one"),
        ("trigger 'cat' vmlinux:schedule", "'vmlinux:schedule' is not a function a patch"),
        ("trigger 'cat' vmlinux:__do_sys_getpid=x", "a decimal count"),
        ("trigger 'cat vmlinux:__do_sys_getpid", "No closing quotation"),
    ],
)
def test_bad_trigger(tmp_path: Path, step: str, message: str) -> None:
    text = SCENARIO.replace('"disable lp",', f'"{step}",')
    with pytest.raises(ScenarioError, match=message):
        scenario(tmp_path, text)


def test_model_predicts_who_runs(tmp_path: Path) -> None:
    records = predict(scenario(tmp_path))
    assert records[0].ran == {
        "vmlinux:version_proc_show": "orig*1",
        "vmlinux:__do_sys_getpid": "orig",
    }
    # a body replaces the original; the default replacement goes on into it
    assert records[2].ran == {
        "vmlinux:version_proc_show": "lp*1",
        "vmlinux:__do_sys_getpid": "lp+orig",
    }
    assert records[4].ran == records[0].ran
    assert records[1].ran == {}


def test_guest_output_parsed(tmp_path: Path) -> None:
    s = scenario(tmp_path)
    step = s.steps[2]
    assert isinstance(step, Trigger)
    out = "\n".join(
        [
            "B k klp_orig_0 3",
            "B k klp_orig_1 40",
            "B c lp vmlinux:version_proc_show 0",
            "B c lp vmlinux:__do_sys_getpid 7",
            "A k klp_orig_0 3",
            "A k klp_orig_1 42",
            "A c lp vmlinux:version_proc_show 1",
            "A c lp vmlinux:__do_sys_getpid 9",
        ]
    )
    assert parse_ran(out, step, watched(s)) == {
        "vmlinux:version_proc_show": "lp*1",
        "vmlinux:__do_sys_getpid": "lp+orig",
    }
    assert parse_ran("", step, watched(s))["vmlinux:version_proc_show"] == "none*0"


def test_scripts_use_builtins_only(tmp_path: Path) -> None:
    s = scenario(tmp_path)
    setup = setup_script(watched(s))
    assert 'echo "p:klp_orig_0 version_proc_show+5"' in setup
    assert 'echo "p:klp_orig_1 __do_sys_getpid+9"' in setup
    step = s.steps[0]
    assert isinstance(step, Trigger)
    script = trigger_script(step)
    assert "cat /proc/version" not in script  # passed as data, not as shell text
    assert command_data("cat /proc/version") in script
    for program in ("grep", "awk", "sed", "$(", "`"):
        assert program not in script
    assert setup_script([]) == ""


@pytest.mark.parametrize(
    ("command", "status", "stderr"),
    [
        ("exit 7", 7, ""),  # its own status, whatever errno has that number
        ("echo unbalanced )", 2, "syntax error near unexpected token `)'"),
        ("true ) ; __rc=0; echo escaped >&2 ; ( true", 2, "syntax error"),
        ("__rc=0; echo \"$((6*7)) 'q' ü\" >&2; false", 1, "42 'q' ü"),
        ("printf '%s\\n' 'a\\x41' >&2", 0, "a\\x41"),
    ],
)
def test_the_command_is_data_with_its_own_status_and_stderr(
    command: str, status: int, stderr: str
) -> None:
    """The trigger's command line as the guest's bash runs it (the host's bash here):
    nothing of the command is parsed as the step's shell text, so it cannot end the
    subshell early or set the step's variables; its exit status and stderr are its
    own."""
    script = (
        f"__rc=99; {command_data(command)}; {RUN_COMMAND} </dev/null >/dev/null "
        '2>"$ERR"; __rc=$?; echo "$__rc"'
    )
    with tempfile.NamedTemporaryFile() as err:
        out = subprocess.run(["bash", "-c", script], env={"ERR": err.name, "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert out.stdout == f"{status}\n"
        message = Path(err.name).read_text()
    assert stderr in message
    assert "escaped\n" not in message  # only quoted in bash's syntax error
