"""A run's results in KernelCI's common database format (KCIDB I/O schema v5), which
labs submit to KernelCI with `kcidb-submit`.

Per profile, one checkout (the kernel as packaged or built, no git commit to name)
and one build (that kernel, x86_64); per scenario on it, one test at
`livepatch.klp_harness.<group>.<scenario>` (the group being the scenario's folder,
e.g. `coexist`).  Statuses: pass -> PASS, difference -> FAIL (the kernel is not what
the model predicts), host failure -> MISS (the harness failed: nothing is known of
the kernel), refused and skipped -> SKIP.  Everything is read from the results
directory (outcome.json), so a run copied off a CI runner converts as well.
Identifiers are `<origin>:<run>-<digest>...`: the origin is the lab's name with
KernelCI, the digest keeps two labs' runs of the same second apart.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.files import atomic_write
from harness.report.artifact_types import ScenarioRun
from harness.report.artifacts import read_outcomes

SCHEMA_VERSION = {"major": 5, "minor": 3}
DEFAULT_ORIGIN = "klp_harness"
TEST_ROOT = "livepatch.klp_harness"
STATUS = {
    "pass": "PASS",
    "difference": "FAIL",
    "host-failure": "MISS",
    "refused": "SKIP",
    "skipped": "SKIP",
    "incomplete": "MISS",
}
_PATH_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
EXCERPT_MAX = 16384


def _segment(name: str) -> str:
    return _PATH_UNSAFE.sub("_", name).strip("_") or "_"


def _group(run: ScenarioRun) -> str:
    scenario_file = run.outcome.scenario_file
    return _segment(Path(scenario_file).parent.name) if scenario_file else "scenarios"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _excerpt(run: ScenarioRun) -> str | None:
    report = run.directory / "report.txt"
    try:
        text = report.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = run.outcome.reason or run.outcome.error or ""
    text = text.replace("\0", "")
    return text[:EXCERPT_MAX] or None


def kcidb_document(results: Path, origin: str = DEFAULT_ORIGIN) -> dict[str, Any]:
    """The KCIDB document of a results directory `results/<run>`."""
    if not re.fullmatch(r"[a-z0-9_]+", origin):
        raise UsageError(f"--kcidb-origin {origin!r}: KCIDB origins are [a-z0-9_]+")
    runs = read_outcomes(results)
    where = f"{socket.gethostname()}:{results.resolve()}"
    run_id = f"{_segment(results.name)}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"
    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[str, dict[str, Any]] = {}
    tests = []
    for run in runs:
        kernel = dict(run.outcome.kernel) or {"profile": run.profile}
        checkout_id = f"{origin}:{run_id}-{_segment(run.profile)}"
        build_id = f"{checkout_id}-build"
        if checkout_id not in checkouts:
            release = kernel.get("release", "")
            checkouts[checkout_id] = {
                "id": checkout_id,
                "origin": origin,
                "tree_name": _segment(run.profile),
                "comment": f"{run.profile} kernel {release}".strip(),
                "valid": True,
                "misc": kernel,
            }
            builds[build_id] = {
                "id": build_id,
                "checkout_id": checkout_id,
                "origin": origin,
                "architecture": "x86_64",
                "comment": kernel.get("vermagic") or run.profile,
                "status": "PASS",
            }
        test: dict[str, Any] = {
            "id": f"{build_id}-{_segment(run.scenario)}",
            "build_id": build_id,
            "origin": origin,
            "path": f"{TEST_ROOT}.{_group(run)}.{_segment(run.scenario)}",
            "status": STATUS[run.outcome.status],
            "comment": run.outcome.reason or run.outcome.status,
            "misc": {
                "first_difference": run.outcome.first_difference,
                "command": run.outcome.command,
            },
        }
        if run.outcome.seconds is not None:
            test["duration"] = run.outcome.seconds
        if run.outcome.steps:
            test["start_time"] = _iso(run.outcome.steps[0].host_start)
        excerpt = _excerpt(run) if run.outcome.status != "pass" else None
        if excerpt:
            test["log_excerpt"] = excerpt
        tests.append(test)
    return {
        "version": dict(SCHEMA_VERSION),
        "checkouts": list(checkouts.values()),
        "builds": list(builds.values()),
        "tests": tests,
    }


def write_kcidb(results: Path, path: Path, origin: str = DEFAULT_ORIGIN) -> None:
    """Write the KCIDB document of `results` to `path`."""
    atomic_write(path, json.dumps(kcidb_document(results, origin), indent=1) + "\n")
