"""The reproducers committed under docs/findings/ are what `export repro` writes
today: a change of the model or the export shows up here first."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.export.expect import Expect
from harness.export.repro import export_repro
from harness.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[2]
REPROS = {
    "1-kprobe-unarmed": "tests/scenarios/coexist/03_livepatch_first_then_kprobes.toml",
    "2-bpf-half-backport": "tests/scenarios/bugs/05_fentry_then_fexit_on_livepatched_function.toml",
    "4-kretprobe-docs": "tests/scenarios/coexist/09_kretprobe_docs.toml",
    "5-kprobe-disarm-warn": "tests/scenarios/bugs/06_kprobe_joins_kretprobe_disarm_warns.toml",
    "6-failed-coming-relocs": "tests/scenarios/bugs/07_failed_coming_leaves_klp_relocs.toml",
}


@pytest.mark.parametrize("name", sorted(REPROS))
def test_committed_reproducer_is_current(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the scenario's path as the files name it
    export_repro(load_scenario(Path(REPROS[name])), tmp_path, Expect.FIXED)
    committed = ROOT / "docs" / "findings" / name
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in committed.iterdir())
    for file in written:
        assert (tmp_path / file).read_bytes() == (committed / file).read_bytes(), (
            f"{committed / file} is stale: klp-harness export repro {REPROS[name]} -o {committed}"
        )


def test_every_reproducer_is_listed() -> None:
    directories = {p.name for p in (ROOT / "docs" / "findings").iterdir() if p.is_dir()}
    assert directories == set(REPROS)
