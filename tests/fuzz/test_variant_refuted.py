"""`klp-harness fuzz` on a real guest refutes a model variant: the slip that clears
`patched` on static objects when a cumulative patch's nops are discarded is shown
wrong by the kernel within a small budget, shrunk on the kernel to one step, and
kept in the corpus as a scenario that the model itself (the default) passes, with the
artifacts of its rerun beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.fuzz.findings import CORPUS, REPORT, SCENARIO
from harness.pytest_plugin import selected_profile_names
from harness.scenario.loader import load_scenario
from harness.scenario.step_types import format_step

pytestmark = pytest.mark.vm


def test_fuzz_refutes_a_variant_on_the_kernel(
    tmp_path: Path, pytestconfig: pytest.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = selected_profile_names(pytestconfig)[0]
    out = tmp_path / "out"
    code = cli_main(
        ["fuzz", "--kernel", profile, "--model-variant", "static-patched-cleared",
         "--budget", "90s", "--shrink-budget", "60s", "--seed", "2", "--results", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    (toml,) = (out / CORPUS).glob(f"*/{SCENARIO}")
    scenario = load_scenario(toml)
    (step,) = (format_step(step) for step in scenario.steps)  # a cumulative patch's load
    assert step in ("load p_cum", "load p_cmd replace=1"), err
    assert scenario.kernels == (profile,)
    report = (toml.parent / REPORT).read_text()
    assert "/vmlinux/patched: expected '0', observed '1'" in report
    assert "this history refutes the variant" in report
    (artifacts,) = toml.parent.glob(f"{profile}-*")
    assert (artifacts / "kernel.log").is_file()  # the rerun, with artifacts
