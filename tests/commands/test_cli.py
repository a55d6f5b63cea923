"""The command line as a whole: one spelling of each option on every verb, exit codes
in every --help, no abbreviations, --version, list, completion, and the verbs'
one-line refusals (no guest, no build)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import COMMANDS, build_parser
from harness.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "scenarios"

# verb -> the shared options its --help must show
SHARED = {
    "run": ["--kernel PROFILE", "--kernel-dir DIR", "--results DIR", "--append ARGS",
            "--memory MIB", "--cpus N", "--model-variant NAME", "-x, --exitfirst", "--json FILE"],
    "repro": ["--kernel PROFILE", "--results DIR", "--append ARGS", "--memory MIB",
              "--cpus N", "--model-variant NAME"],
    "check": ["--kernel PROFILE", "--results DIR", "--append ARGS", "--memory MIB",
              "--cpus N", "--json FILE"],
    "boot": ["--kernel PROFILE", "--results DIR", "--append ARGS", "--memory MIB", "--cpus N"],
    "selftests": ["--kernel PROFILE", "--results DIR", "--append ARGS"],
    "model": ["--kernel PROFILE", "--kernel-series SERIES", "--kernel-dir DIR"],
    "build": ["--kernel PROFILE", "--kernel-dir DIR"],
    "fuzz": ["--kernel PROFILE", "--results DIR, --out DIR", "--model-variant NAME"],
    "render": ["-o DIR, --output DIR"],
    "list": ["--kernel PROFILE", "--feature NAME"],
}  # fmt: skip


def help_of(verb: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        cli_main([verb, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # unwrapped


@pytest.mark.parametrize("verb", [*SHARED, "setup", "completion"])
def test_every_verb_shows_its_shared_options_and_the_exit_codes(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(verb, capsys)
    for option in SHARED.get(verb, []):
        assert option in text, (verb, option)
    assert "exit codes: 0 every scenario passed" in text
    assert "3 the host or the harness failed" in text


def test_every_verb_is_known() -> None:
    assert set(SHARED) | {"setup", "completion"} <= set(COMMANDS)


def test_no_parser_takes_abbreviations() -> None:
    parser = build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert not parser.allow_abbrev
    assert all(not p.allow_abbrev for p in subparsers[0].choices.values())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("klp-harness 0.")


def test_completion_completes_verbs_and_profiles(tmp_path: Path) -> None:
    """What bash gets from argcomplete for `klp-harness ru<TAB>` and `--kernel <TAB>`."""

    def complete(line: str) -> list[str]:
        out = tmp_path / "out"
        env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n",
               "COMP_LINE": line, "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME":
               str(out), "PYTHONPATH": str(ROOT)}  # fmt: skip
        subprocess.run([sys.executable, "-m", "harness.cli"], env=env, check=False, timeout=60)
        return [word.strip() for word in out.read_text().split("\n")]

    assert "run" in complete("klp-harness ru")
    assert set(complete("klp-harness run --kernel ")) >= {"debian-6.1", "debian-6.12", "all"}
    assert "no-nops" in complete("klp-harness run --model-variant no-")
    script = subprocess.run(
        [sys.executable, "-m", "harness.cli", "completion", "bash"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "complete " in script and "klp-harness" in script


def test_list_filters_by_kernel_and_feature(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["list", "--json", str(SCENARIOS)]) == 0
    every = json.loads(capsys.readouterr().out)
    assert len(every) == len(list(SCENARIOS.rglob("*.toml")))
    assert cli_main(["list", "--json", "--kernel", "debian-7.3", "--feature", "spinner",
                     str(SCENARIOS)]) == 0  # fmt: skip
    chosen = json.loads(capsys.readouterr().out)
    assert chosen and all("spinner" in d["features"] for d in chosen)
    assert all("debian-7.3" in d["kernels"] for d in chosen)
    assert any(d["scenario"] == "03_spinner_without_cond_resched" for d in chosen)
    only_61 = [d for d in every if d["kernels"] == ["debian-6.1"]]
    assert not {d["path"] for d in only_61} & {d["path"] for d in chosen}
    assert cli_main(["list", str(SCENARIOS / "upstream" / "01_livepatch_basic.toml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("upstream/01_livepatch_basic.toml  [all kernels]  ")


def test_fuzz_without_its_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.commands import fuzz

    real = fuzz.importlib.util.find_spec
    monkeypatch.setattr(
        fuzz.importlib.util, "find_spec", lambda name: None if name == "hypothesis" else real(name)
    )
    assert cli_main(["fuzz", "--model-only", "--budget", "1s"]) == 3
    err = capsys.readouterr().err
    assert err == (
        "klp-harness: error: klp-harness fuzz needs hypothesis, not installed: "
        "pip install 'klp-harness[fuzz]'\n"
    )


def test_a_profile_not_set_up_is_fetched_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.commands import common, setup
    from harness.kernel import debian, profiles
    from tests.runner.fakes import PROFILES

    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path))
    fetched: list[str] = []

    def fetch(name: str, _apt: object) -> object:
        fetched.append(name)
        (tmp_path / "kernels" / name).mkdir(parents=True)
        return PROFILES[name]

    monkeypatch.setattr(debian, "fetch_profile", fetch)
    monkeypatch.setattr(setup, "check_config", lambda _profile: None)
    monkeypatch.setattr(profiles, "load_profile", lambda name: PROFILES[name])
    assert common.ensure_profile("debian-7.3") is PROFILES["debian-7.3"]
    assert common.ensure_profile("debian-7.3") is PROFILES["debian-7.3"]  # once
    assert fetched == ["debian-7.3"]
    assert "kernel profile debian-7.3 is not set up: fetching it" in capsys.readouterr().err


def test_one_kernel_verbs_refuse_several(capsys: pytest.CaptureFixture[str]) -> None:
    spec = SCENARIOS / "upstream" / "01_livepatch_basic.toml"
    assert cli_main(["repro", str(spec), "--kernel", "all"]) == 2
    assert "repro works on one kernel profile at a time" in capsys.readouterr().err
    assert cli_main(["repro", str(spec), "--until", "99"]) == 2
    assert "--until 99: the scenario has steps 1 to 3" in capsys.readouterr().err


def test_render_to_stdout_or_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds = SCENARIOS / "seeds"
    assert cli_main(["render", str(seeds / "004_replace_drops_function.toml")]) == 0
    out = capsys.readouterr().out
    assert "==> seed_target.c <==" in out and "==> Kbuild <==" in out
    assert 'MODULE_INFO(livepatch, "Y");' in out
    assert cli_main(["render", str(seeds)]) == 2
    assert "give -o DIR to render several" in capsys.readouterr().err
    assert cli_main(["render", str(seeds), "-o", str(tmp_path)]) == 0
    assert (tmp_path / "004_replace_drops_function" / "Kbuild").is_file()
