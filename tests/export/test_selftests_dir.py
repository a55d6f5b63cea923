"""`selftests --dir`: the exported scripts and modules beside the profile's own
functions.sh, as a tree the upstream runner takes (harness/upstream/selftests.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.export.directory import Target, export_kselftests
from harness.export.expect import Expect
from harness.kernel.sources import SELFTESTS, LivepatchSources
from harness.upstream.selftests import build_programs, exported_sources
from tests.export.conftest import shipped


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LivepatchSources:
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "linux"
    scripts = root / SELFTESTS
    (scripts / "test_modules").mkdir(parents=True)
    (scripts / "functions.sh").write_text("# upstream's helpers\n")
    (scripts / "settings").write_text("timeout=0\n")
    (scripts / "test-livepatch.sh").write_text("# upstream's own test\n")
    (scripts / "test_modules" / "test_klp_livepatch.c").write_text("/* upstream's */\n")
    (scripts / "Makefile").write_text("TEST_GEN_FILES := test_klp-call_getpid\n")
    return LivepatchSources(root)


def test_exported_tests_take_the_place_of_upstreams(
    upstream: LivepatchSources, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    scenarios = [shipped("coexist/03"), shipped("bugs/01")]
    export_kselftests(scenarios, out, Target("debian-6.1", "6.1", "6.1"), Expect.AS_IS)
    merged = exported_sources(upstream, out)
    assert merged.makefile_list("TEST_PROGS") == [
        "test-bugs-01-replace-sympos-0-vs-1.sh",
        "test-coexist-03-livepatch-first-then-kprobes.sh",
    ]
    assert merged.makefile_list("TEST_GEN_FILES") == [] and build_programs(merged) == []
    files = sorted(p.name for p in merged.scripts_dir.iterdir() if p.is_file())
    assert files == [
        ".exported",
        "Makefile",
        "functions.sh",
        "settings",
        "test-bugs-01-replace-sympos-0-vs-1.sh",
        "test-coexist-03-livepatch-first-then-kprobes.sh",
    ]
    modules = sorted(p.name for p in merged.modules_dir.glob("*.c"))
    assert "test_klp_livepatch.c" not in modules and "test_klp_kp_post.c" in modules
    assert exported_sources(upstream, out).root == merged.root  # cached by content


def test_a_directory_without_scripts_is_refused(upstream: LivepatchSources, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no test-\*\.sh scripts"):
        exported_sources(upstream, tmp_path)
