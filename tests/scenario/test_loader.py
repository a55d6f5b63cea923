"""The scenario loader: valid files become typed scenarios, every bad input is one line
`<file>: <where>: <message>` (exit 2 from the CLI, never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.errors import ScenarioError
from harness.scenario.loader import load_scenario, load_scenarios
from harness.scenario.step_types import (
    Call,
    Disable,
    Force,
    Load,
    Park,
    SetParam,
    SysctlFtrace,
    Unload,
    format_step,
)
from harness.scenario.types import Blocker, Callback, KlpState, PatchObject, ShadowOp, ShadowOpKind

SCENARIOS = Path(__file__).parents[1] / "scenarios"

GOOD = """\
description = "A target, a patch, every kind of step."
links = ["https://example.org/bug"]
kernels = ["debian-6.1"]
steps = [
  "load tgt block_transition=N",
  "load lp replace=1 pre_patch_ret=-19 --nowait",
  "wait lp",
  "call tgt:alpha",
  "call vmlinux:cmdline_proc_show",
  "set lp pre_patch_ret 0",
  "park tgt",
  "release tgt",
  "force lp",
  "enable lp",
  "disable lp --nowait",
  "sysctl ftrace_enabled=1",
  "unload lp",
  "unload tgt",
]

[[target]]
name = "tgt"
funcs = ["alpha", "beta"]
blocker = "alpha"
shadow = [{ op = "get_or_alloc", obj = 1, id = 0x1234, ctor_data = 1 }]

[[patch]]
name = "lp"
replace = false
pre_patch_ret = -22
states = [{ id = 1, version = 2 }]
shadow = [{ op = "free_all", id = 0x1234, dtor = true }]

[[patch.object]]
name = "vmlinux"
funcs = ["cmdline_proc_show"]
callbacks = "all"

[[patch.object]]
name = "tgt"
funcs = ["alpha"]
callbacks = ["pre_patch", "post_unpatch"]
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message[len(f"{path}: ") :]


def test_good_scenario_builds_the_types(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.name == "s"
    assert scenario.kernels == ("debian-6.1",)
    assert scenario.links == ("https://example.org/bug",)
    (target,) = scenario.targets
    assert target.blocker == Blocker("alpha", "block_transition")
    assert target.shadow == (ShadowOp(ShadowOpKind.GET_OR_ALLOC, 0x1234, 1, 1),)
    (patch,) = scenario.patches
    assert patch.pre_patch_ret == -22
    assert patch.states == (KlpState(1, 2),)
    assert patch.objects[0] == PatchObject("vmlinux", ("cmdline_proc_show",), frozenset(Callback))
    assert patch.objects[1].callbacks == {Callback.PRE_PATCH, Callback.POST_UNPATCH}
    steps = scenario.steps
    assert steps[0] == Load("tgt", (("block_transition", "N"),))
    assert steps[1] == Load("lp", (("replace", "1"), ("pre_patch_ret", "-19")), nowait=True)
    assert steps[3] == Call("tgt", "alpha")
    assert steps[5] == SetParam("lp", "pre_patch_ret", "0")
    assert steps[6] == Park("tgt")
    assert steps[8] == Force("lp")
    assert steps[10] == Disable("lp", nowait=True)
    assert steps[11] == SysctlFtrace(1)
    assert steps[13] == Unload("tgt")


def test_step_text_round_trips(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    texts = [format_step(step) for step in scenario.steps]
    assert texts[1] == "load lp replace=1 pre_patch_ret=-19 --nowait"
    assert texts[10] == "disable lp --nowait"
    again = load_scenario(write(tmp_path, GOOD.replace("load lp replace=1", "load  lp replace=1")))
    assert again.steps == scenario.steps


def test_every_shipped_scenario_loads() -> None:
    scenarios = load_scenarios([SCENARIOS])
    assert len(scenarios) >= 25
    names = [s.path for s in scenarios]
    assert names == sorted(names)


def test_directories_expand_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    write(tmp_path / "b", GOOD, "z.toml")
    write(tmp_path, GOOD, "a.toml")
    assert [s.name for s in load_scenarios([tmp_path])] == ["a", "z"]


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"no \*\.toml"):
        load_scenarios([tmp_path])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: file: does not exist"


# One line per kind of bad input: (what, replacement of GOOD's text, expected message).
BAD = [
    (
        "toml syntax",
        ('name = "tgt"', 'name = "tgt'),
        "line 22, column 12: TOML syntax error: Illegal character",
    ),
    ("unknown top key", ("kernels =", "kernel ="), "kernel: unknown key 'kernel'"),
    (
        "unknown target key",
        ('blocker = "alpha"', 'blocked = "alpha"'),
        "target[0].blocked: unknown key 'blocked'",
    ),
    (
        "unknown object key",
        ('callbacks = "all"', 'callback = "all"'),
        "patch[0].object[0].callback: unknown key",
    ),
    (
        "wrong type",
        ("replace = false", 'replace = "no"'),
        "patch[0].replace: expected true or false",
    ),
    (
        "wrong list type",
        ('funcs = ["alpha", "beta"]', 'funcs = "alpha"'),
        "target[0].funcs: expected a list",
    ),
    (
        "missing required",
        ('[[target]]\nname = "tgt"\n', "[[target]]\n"),
        "target[0].name: missing (required)",
    ),
    (
        "missing description",
        ('description = "A target, a patch, every kind of step."\n', ""),
        "description: missing (required)",
    ),
    ("empty steps", ("steps = [", "steps = [] \nold = ["), "unknown key 'old'"),
    ("unknown verb", ('"wait lp"', '"sleep lp"'), "steps[2]: unknown step 'sleep'"),
    (
        "wrong arg count",
        ('"unload tgt"', '"unload tgt lp"'),
        "steps[13]: unload takes 1 argument, got 2",
    ),
    ("unknown module", ('"unload tgt"', '"unload tgx"'), "steps[13]: unknown module 'tgx'"),
    ("unknown patch", ('"force lp"', '"force tgt"'), "steps[8]: 'tgt' is not a livepatch module"),
    (
        "unknown function",
        ('"call tgt:alpha"', '"call tgt:gamma"'),
        "steps[3]: tgt has no function 'gamma'",
    ),
    (
        "unknown object",
        ('"call tgt:alpha"', '"call nope:alpha"'),
        "steps[3]: 'nope' is neither 'vmlinux' nor a target",
    ),
    ("unknown param", ("block_transition=N", "blocking=N"), "tgt has no parameter 'blocking'"),
    (
        "param syntax",
        ("block_transition=N", "block_transition"),
        "module parameters are PARAM=VALUE",
    ),
    ("bad bool", ("block_transition=N", "block_transition=maybe"), "block_transition is a bool"),
    ("bad errno param", ("pre_patch_ret=-19", "pre_patch_ret=19"), "19 is positive"),
    ("bad sysctl", ("ftrace_enabled=1", "ftrace_enabled=2"), "ftrace_enabled must be 0 or 1"),
    (
        "nowait on a target",
        ("load tgt block_transition=N", "load tgt --nowait"),
        "--nowait only applies to livepatch modules",
    ),
    (
        "param the target lacks",
        ('blocker = "alpha"\n', ""),
        "steps[0]: tgt has no parameter 'block_transition' (it has: none)",
    ),
    ("duplicate module (checks)", ('name = "lp"', 'name = "tgt"'), "duplicate module name"),
    ("injection in a name (checks)", ('name = "tgt"', 'name = "tgt;rm"'), "is not a C identifier"),
    (
        "func the target lacks (checks)",
        ('funcs = ["alpha"]\ncallbacks', 'funcs = ["zeta"]\ncallbacks'),
        "tgt does not define 'zeta'",
    ),
    (
        "bad errno (checks)",
        ("pre_patch_ret = -22", "pre_patch_ret = -4000"),
        "not a known negative errno",
    ),
    (
        "unknown callback",
        ('["pre_patch", "post_unpatch"]', '["pre_patch", "post"]'),
        "unknown callback 'post'",
    ),
    ("unknown shadow op", ('op = "free_all"', 'op = "drop"'), "unknown shadow op 'drop'"),
    ("unknown kernel profile", ('["debian-6.1"]', '["debian-5.4"]'), "unknown profile"),
    ("empty step", ('"wait lp"', '"  "'), "steps[2]: empty step"),
    # Values the kernel's kstrtoint refuses although Python's int(v, 0) takes them.
    *(
        (
            f"kstrtoint refuses {value}",
            ("replace=1 ", f"replace={value} "),
            f"steps[1]: replace value {value!r}: kstrtoint would fail with -{errno_name}",
        )
        for value, errno_name in [
            ("1_0", "EINVAL"),
            ("0b1", "EINVAL"),
            ("0o7", "EINVAL"),
            ("08", "EINVAL"),
            ("\u0661", "EINVAL"),  # ARABIC-INDIC DIGIT ONE
            ("12345678901234567890", "ERANGE"),
            ("2147483648", "ERANGE"),
            ("0x", "EINVAL"),
        ]
    ),
    (
        "kstrtoint refuses a set value",
        ("set lp pre_patch_ret 0", "set lp pre_patch_ret 0o0"),
        "steps[5]: pre_patch_ret value '0o0': kstrtoint would fail with -EINVAL",
    ),
]


@pytest.mark.parametrize(("what", "change", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line(
    tmp_path: Path, what: str, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in GOOD, what
    assert expected in error_of(tmp_path, GOOD.replace(old, new, 1))


def test_park_needs_a_blocker(tmp_path: Path) -> None:
    text = GOOD.replace('blocker = "alpha"\n', "").replace(" block_transition=N", "")
    assert error_of(tmp_path, text).startswith("steps[6]: target 'tgt' has no blocker")


def test_empty_step_list(tmp_path: Path) -> None:
    text = GOOD[: GOOD.index("steps = [")] + "steps = []\n" + GOOD[GOOD.index("[[target]]") :]
    assert error_of(tmp_path, text).startswith("steps: is empty")


def test_cli_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace('"wait lp"', '"sleep lp"'))
    assert cli_main(["model", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"klp-harness: error: {path}: steps[2]: unknown step 'sleep'")
    assert "Traceback" not in err
