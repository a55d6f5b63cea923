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
from harness.scenario.writer import scenario_toml

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
    assert watched(s) == [
        Watch("vmlinux", "version_proc_show"),
        Watch("vmlinux", "__do_sys_getpid"),
    ]


def test_any_function_and_symbol_positions(tmp_path: Path) -> None:
    """A trigger watches any function, patched or not; `,SYMPOS` picks one of several
    definitions, `,1` being the first as for a patch's func."""
    text = SCENARIO.replace(
        '"disable lp",',
        "\"trigger 'cat /sys/class/net/lo/flags' vmlinux:flags_show,3=1 vmlinux:elf_load,1 "
        'vmlinux:schedule",',
    )
    s = scenario(tmp_path, text)
    step = next(st for st in s.steps if isinstance(st, Trigger) and "flags" in st.command)
    assert step.watch == (
        Watch("vmlinux", "flags_show", 1, 3),
        Watch("vmlinux", "elf_load", None, 1),
        Watch("vmlinux", "schedule"),
    )
    assert [w.key for w in step.watch] == [
        "vmlinux:flags_show,3",
        "vmlinux:elf_load",  # the first, as sympos 0 and 1 both name it
        "vmlinux:schedule",
    ]
    assert format_step(step).endswith("vmlinux:flags_show,3=1 vmlinux:elf_load,1 vmlinux:schedule")
    assert scenario(tmp_path, scenario_toml(s)).steps == s.steps


def test_symbol_position_probed_by_address(tmp_path: Path) -> None:
    """A name defined several times has no unique probe point by name: the probe goes
    to the address of the chosen definition, counted in /proc/kallsyms' order."""
    setup = setup_script([Watch("vmlinux", "flags_show", sympos=3), Watch("vmlinux", "schedule")])
    assert "awk -v n=flags_show -v m= -v p=3" in setup
    assert 'echo "p:klp_orig_0 $(printf 0x%x $((0x$__klp_at + 5)))"' in setup
    assert 'echo "p:klp_orig_1 schedule+5"' in setup
    step = Trigger("true", (Watch("lp-mod", "f", sympos=2),))
    script = trigger_script(step, step.watch)
    assert "awk -v n=f -v m=lp_mod -v p=2" in script  # kallsyms' [module] name


def test_predicted_by_the_func_stack_of_the_position(tmp_path: Path) -> None:
    """A patch of the third definition redirects that one only."""
    text = SCENARIO_POSITIONS
    (tmp_path / "s.toml").write_text(text)
    records = predict(load_scenario(tmp_path / "s.toml"))
    assert [r.ran for r in records if r.ran] == [
        {"vmlinux:flags_show,3": "orig*1", "vmlinux:flags_show,2": "orig"},
        {"vmlinux:flags_show,3": "lp+orig*1", "vmlinux:flags_show,2": "orig"},
    ]


SCENARIO_POSITIONS = """\
description = "The third flags_show patched, the second watched beside it."
steps = [
  "trigger 'cat /sys/class/net/lo/flags' vmlinux:flags_show,3=1 vmlinux:flags_show,2",
  "load lp",
  "trigger 'cat /sys/class/net/lo/flags' vmlinux:flags_show,3=1 vmlinux:flags_show,2",
]

[[patch]]
name = "lp"

[[patch.object]]
name = "vmlinux"
funcs = [{ name = "flags_show", sympos = 3 }]
"""


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("trigger 'cat /proc/version'", "needs a command and at least one"),
        ("trigger 'cat' nosuchmod:f", "'nosuchmod' is neither 'vmlinux', a target module"),
        ("trigger 'cat' lp:f", "lp is a patch; watch the function it patches"),
        ("trigger 'cat' vmlinux:f(x)", "'f\\(x\\)' is not a function name"),
        ("trigger 'cat' vmlinux:f,0", "the symbol position is a decimal from 1"),
        ("trigger 'cat' vmlinux:f,x", "the symbol position is a decimal from 1"),
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


DUMMY = """\
description = "A module's function, watched with the module out and in."
steps = [
  "load lp",
  "trigger 'cat /proc/net/dev' dummy:dummy_get_stats64",
  "load dummy",
  "trigger 'cat /proc/net/dev' dummy:dummy_get_stats64",
  "unload dummy",
  "trigger 'cat /proc/net/dev' dummy:dummy_get_stats64",
]

[[patch]]
name = "lp"

[[patch.object]]
name = "dummy"
funcs = ["dummy_get_stats64"]
"""


def test_a_function_of_a_module_not_loaded_runs_nowhere(tmp_path: Path) -> None:
    """Found by the fuzzer on 7.3: the model said the original ran while dummy was not
    loaded; the probe waits for the module and nothing is called."""
    records = predict(scenario(tmp_path, DUMMY))
    gone = {"dummy:dummy_get_stats64": "none"}
    assert [records[i].ran for i in (1, 3, 5)] == [
        gone,
        {"dummy:dummy_get_stats64": "lp+orig"},
        gone,
    ]


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
