"""Real functions are checked against a profile's own symbols before any guest or
build: unknown, ambiguous without sympos, sympos out of range, not ftrace-able, a module
the kernel does not have.  Module symbols come from the .ko (pyelftools)."""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.errors import ScenarioError
from harness.guest import vm
from harness.kernel.profiles import KernelProfile
from harness.scenario.loader import load_scenario
from harness.scenario.types import Scenario
from harness.symbols import record, validate
from harness.symbols.data import ObjectSymbols, module_symbols
from harness.symbols.record import VmlinuxRecord

FUNCS = ("version_proc_show", "s_show", "s_show", "do_notrace", "__do_sys_getpid")
VMLINUX = VmlinuxRecord(
    ObjectSymbols("vmlinux", FUNCS, frozenset({"version_proc_show", "s_show", "__do_sys_getpid"})),
    frozenset({"virtio_net"}),
)

SCENARIO = """\
description = "Patches a real function."
kernels = ["debian-6.1"]
steps = ["load lp", "disable lp", "unload lp"]

[[patch]]
name = "lp"

[[patch.object]]
name = "vmlinux"
funcs = [FUNCS]
"""


def scenario_file(tmp_path: Path, funcs: str, obj: str = "vmlinux") -> Path:
    path = tmp_path / "real.toml"
    text = SCENARIO.replace("FUNCS", funcs).replace('name = "vmlinux"', f'name = "{obj}"')
    if obj != "vmlinux":
        text = text.replace('steps = ["load lp"', f'steps = ["load {obj}", "load lp"')
    path.write_text(text)
    return path


def profile(tmp_path: Path) -> KernelProfile:
    return KernelProfile(
        "debian-6.1", "6.1.0-x", "6.1.1", "", tmp_path, tmp_path, tmp_path / "m", tmp_path, True
    )


@pytest.mark.parametrize(
    ("funcs", "where", "message"),
    [
        ('"version_proc_sho"', "funcs[0]", "vmlinux has no function 'version_proc_sho' (close: "),
        ('"s_show"', "funcs[0]", "'s_show' is defined 2 times in vmlinux: choose one with sympos"),
        ('{ name = "s_show", sympos = 3 }', "funcs[0].sympos", "sympos 3 out of range"),
        ('{ name = "version_proc_show", sympos = 2 }', "funcs[0].sympos", "(sympos = 1, or 0"),
        ('"do_notrace"', "funcs[0]", "vmlinux:do_notrace is not ftrace-able"),
    ],
)
def test_bad_real_func(tmp_path: Path, funcs: str, where: str, message: str) -> None:
    scenario = load_scenario(scenario_file(tmp_path, funcs))
    with pytest.raises(ScenarioError) as info:
        validate.check_scenario(scenario, profile(tmp_path), VMLINUX)
    text = str(info.value)
    assert text.startswith(f"{scenario.path}: patch[0].object[0].{where}: debian-6.1: "), text
    assert message in text


def test_good_real_funcs(tmp_path: Path) -> None:
    funcs = '"version_proc_show", { name = "s_show", sympos = 2 }, "__do_sys_getpid"'
    scenario = load_scenario(scenario_file(tmp_path, funcs))
    assert validate.needs_symbols(scenario)
    validate.check_scenario(scenario, profile(tmp_path), VMLINUX)
    assert scenario.patches[0].objects[0].spec("s_show").sympos == 2
    assert scenario.patched_funcs() == []  # no file read calls them


def test_known_vmlinux_funcs_need_no_record() -> None:
    scenario = load_scenario(Path("tests/scenarios/upstream/01_livepatch_basic.toml"))
    assert not validate.needs_symbols(scenario)


def test_unknown_module_and_preloaded_module(tmp_path: Path) -> None:
    (tmp_path / "m" / "kernel").mkdir(parents=True)
    (tmp_path / "m" / "kernel" / "virtio_net.ko").write_bytes(b"")
    scenario = load_scenario(scenario_file(tmp_path, '"f"', obj="nosuchmod"))
    with pytest.raises(ScenarioError, match="neither 'vmlinux', a scenario target nor a module"):
        validate.check_scenario(scenario, profile(tmp_path), VMLINUX)
    scenario = load_scenario(scenario_file(tmp_path, '"f"', obj="virtio_net"))
    with pytest.raises(ScenarioError, match="loaded in the guest before any step"):
        validate.check_scenario(scenario, profile(tmp_path), VMLINUX)
    # no step loads it: still refused, the guest has it before any step
    unloaded = load_scenario(scenario_file(tmp_path, '"f"', obj="virtio_net"))
    unloaded = dataclasses.replace(unloaded, steps=unloaded.steps[1:])
    with pytest.raises(ScenarioError, match="loaded in the guest before any step"):
        validate.check_scenario(unloaded, profile(tmp_path), VMLINUX)


def test_module_symbols_from_elf(tmp_path: Path) -> None:
    """A module's functions and its ftrace call sites, from a relocatable object built
    the way Kbuild builds modules (-pg -mfentry -mrecord-mcount)."""
    src = tmp_path / "m.c"
    src.write_text(
        "int traced(int x) { return x + 1; }\n"
        "__attribute__((no_instrument_function)) int untraced(int x) { return x * 2; }\n"
        "static int dup(int x) { return x - 1; } int use(int x) { return dup(x); }\n"
    )
    ko = tmp_path / "m.ko"
    subprocess.run(
        ["gcc", "-c", "-O1", "-pg", "-mfentry", "-mrecord-mcount", "-o", str(ko), str(src)],
        check=True,
    )
    symbols = module_symbols(ko)
    assert symbols.name == "m"
    assert {"traced", "untraced", "use"} <= set(symbols.functions)
    assert "traced" in symbols.ftraceable and "use" in symbols.ftraceable
    assert "untraced" not in symbols.ftraceable


def test_run_refuses_before_any_guest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a guest was started for an invalid scenario")

    monkeypatch.setattr(vm.Guest, "__enter__", refuse)
    monkeypatch.setattr(validate, "vmlinux_record", lambda _profile: VMLINUX)
    path = scenario_file(tmp_path, '"s_show"')
    args = ["run", str(path), "--kernel", "debian-6.1", "--results", str(tmp_path / "r")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose one with sympos = 1..2" in err, err
    assert not (tmp_path / "r").exists()


def test_record_round_trip(tmp_path: Path) -> None:
    class FakeGuest:
        def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> object:
            from harness.guest.result import CommandResult

            out = {
                "kallsyms": "a\nb\nb\n",
                "available_filter_functions": "a\nb\nx [virtio]\n",
                "modules": "virtio\n",
            }
            key = next(k for k in out if k in cmd)
            return CommandResult(0, out[key], "")

    record.record_from(FakeGuest(), tmp_path)  # type: ignore[arg-type]
    assert gzip.decompress((tmp_path / record.KALLSYMS).read_bytes()) == b"a\nb\nb\n"
    data = record.read_record(tmp_path)
    assert data.symbols.count("b") == 2 and data.symbols.ftraceable == {"a", "b"}
    assert data.loaded_modules == {"virtio"}


def with_trigger(tmp_path: Path, watch: str) -> Scenario:
    path = scenario_file(tmp_path, '{ name = "s_show", sympos = 1 }')
    step = f"\"trigger 'cat' {watch}\","
    path.write_text(path.read_text().replace('"load lp",', f'"load lp", {step}'))
    return load_scenario(path)


@pytest.mark.parametrize(
    ("watch", "message"),
    [
        ("vmlinux:s_show", "'s_show' is defined 2 times in vmlinux: choose one with watch "
         "vmlinux:s_show,1..2"),
        ("vmlinux:s_show,3", "sympos 3 out of range: 's_show' is defined 2 times"),
        ("vmlinux:getpidd", "vmlinux has no function 'getpidd'"),
    ],
)  # fmt: skip
def test_watched_functions_checked(tmp_path: Path, watch: str, message: str) -> None:
    """A watched function is any of the object's, chosen as a patch's func is."""
    scenario = with_trigger(tmp_path, watch)
    assert validate.needs_symbols(scenario)
    with pytest.raises(ScenarioError, match=rf"steps\[1\]\S*: debian-6.1: {message}"):
        validate.check_scenario(scenario, profile(tmp_path), VMLINUX)


def test_watched_position_accepted(tmp_path: Path) -> None:
    validate.check_scenario(with_trigger(tmp_path, "vmlinux:s_show,2"), profile(tmp_path), VMLINUX)
