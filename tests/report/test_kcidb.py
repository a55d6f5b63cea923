"""Results as KernelCI's KCIDB JSON, validated with KernelCI's own schema library."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import kcidb_io

from harness.cli import main
from harness.report.kcidb import kcidb_document
from tests.report.conftest import NEW, OLD


def test_a_run_validates_and_maps_statuses(results: Callable[[str], Path]) -> None:
    run = results(NEW)
    document = kcidb_document(run, "klp_harness")
    kcidb_io.schema.LATEST.validate(document)
    assert {c["tree_name"] for c in document["checkouts"]} == {
        "debian-6_1",
        "debian-6_12",
        "debian-7_3",
    }
    statuses = {t["path"].rsplit(".", 1)[1]: t["status"] for t in document["tests"]}
    assert statuses  # one test per scenario x profile
    assert set(statuses.values()) <= {"PASS", "FAIL", "MISS", "SKIP"}
    assert all(t["path"].startswith("livepatch.klp_harness.") for t in document["tests"])
    assert len({t["id"] for t in document["tests"]}) == len(document["tests"])


def test_an_older_run_converts_too(results: Callable[[str], Path]) -> None:
    document = kcidb_document(results(OLD))
    kcidb_io.schema.LATEST.validate(document)
    assert document["tests"]


def test_report_redraws_and_writes_kcidb(results: Callable[[str], Path], tmp_path: Path) -> None:
    run = results(NEW)
    for page in run.rglob("index.html"):
        page.unlink()
    out = tmp_path / "kcidb.json"
    assert main(["report", str(run), "--kcidb", str(out)]) == 0
    assert (run / "index.html").is_file()
    assert len(list(run.glob("*/*/index.html"))) == len(json.loads(out.read_text())["tests"])


def test_a_bad_origin_is_usage(results: Callable[[str], Path], tmp_path: Path) -> None:
    out = tmp_path / "kcidb.json"
    code = main(["report", str(results(NEW)), "--kcidb", str(out), "--kcidb-origin", "Bad Lab"])
    assert code == 2
