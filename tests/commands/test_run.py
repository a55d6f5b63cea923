"""`klp-harness run` rejects bad scenarios before any guest starts: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.guest import vm
from tests.scenario.test_loader import BAD, GOOD


@pytest.fixture
def no_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to start QEMU fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a guest was started for an invalid scenario")

    monkeypatch.setattr(vm.Guest, "__enter__", refuse)


CASES = [(what, GOOD.replace(old, new, 1)) for what, (old, new), _ in BAD]
CASES.append(("missing file", None))
CASES.append(("valid file next to a bad one", "BOTH"))


@pytest.mark.parametrize(("what", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_scenario_one_line_exit_2_no_guest(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_guest: None,
    what: str,
    text: str | None,
) -> None:
    bad = tmp_path / "bad.toml"
    args = ["run", str(bad)]
    if text == "BOTH":
        (tmp_path / "good.toml").write_text(GOOD)
        bad.write_text(GOOD.replace('"wait lp"', '"sleep lp"'))
        args = ["run", str(tmp_path / "good.toml"), str(bad)]
    elif text is not None:
        bad.write_text(text)
    assert cli_main([*args, "--results", str(tmp_path / "results")]) == 2, what
    err = capsys.readouterr().err
    assert err.startswith(f"klp-harness: error: {bad}: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build modules fails the test: outputs are checked first."""
    from harness.modules import build

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("modules were built before the outputs were checked")

    monkeypatch.setattr(build, "build_modules", refuse)


UNWRITABLE = [
    ("--results under a file", ["--results", "{tmp}/file/results"], "is not a directory"),
    ("--results is a file", ["--results", "{tmp}/file"], "exists and is not a directory"),
    ("--results under /proc", ["--results", "/proc/klp-results"], "cannot create files in /proc"),
    ("--junit is a directory", ["--junit", "{tmp}"], "is a directory"),
    ("--junit under /proc", ["--junit", "/proc/klp.xml"], "cannot create files in /proc"),
    ("--junit under a file", ["--junit", "{tmp}/file/r.xml"], "is not a directory"),
]


@pytest.mark.parametrize(
    ("what", "options", "expected"), UNWRITABLE, ids=[u[0] for u in UNWRITABLE]
)
def test_unwritable_output_one_line_exit_2_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_guest: None,
    no_build: None,
    what: str,
    options: list[str],
    expected: str,
) -> None:
    spec = tmp_path / "good.toml"
    spec.write_text(GOOD)
    (tmp_path / "file").write_text("")
    args = [o.format(tmp=tmp_path) for o in options]
    if "--results" not in args:
        args += ["--results", str(tmp_path / "results")]
    assert cli_main(["run", str(spec), *args]) == 2, what
    err = capsys.readouterr().err
    assert err.startswith("klp-harness: error: --"), err
    assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()
