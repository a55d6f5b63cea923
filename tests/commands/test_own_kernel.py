"""`--kernel-dir` end to end without building a kernel: debian-6.1's real artifacts
arranged as a built tree (tests/kernel/arranged_tree.py) run scenarios and an upstream
selftest on real guests, model vs kernel, like any profile.  One guest at a time,
without the memory checks (`--fast-guest`): this tests the tree's path, which the
heap checks of the named profiles' runs do not depend on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.kernel.profiles import load_profile
from harness.kernel.sources import fetch_sources
from tests.kernel.arranged_tree import arranged_tree

pytestmark = pytest.mark.vm

SCENARIOS = Path(__file__).parents[1] / "scenarios"
# vmlinux patched and unpatched; a target module, two patches, replace and disable
SMALL = ("upstream/01_livepatch_basic.toml", "seeds/004_replace_drops_function.toml")


@pytest.fixture(scope="module")
def tree() -> Path:
    profile = load_profile("debian-6.1")
    return arranged_tree(profile, fetch_sources(profile).root)


def test_scenarios_pass_on_a_kernel_dir(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios = [str(SCENARIOS / name) for name in SMALL]
    args = ["run", "-j", "1", "--fast-guest", "--ktap", "--results", str(tmp_path)]
    rc = cli_main([*args, "--kernel-dir", str(tree), *scenarios])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"klp-harness: --kernel-dir {tree}: kernel 6.1.0: the model applies its 6.1 rules" in err
    assert "KFENCE memory checks: CONFIG_KFENCE is not set" in err  # Debian's 6.1 has none
    assert re.findall(r"^ok \d+ ", out, re.MULTILINE) and "not ok" not in out, out
    assert len(re.findall(r"^ok \d+ ", out, re.MULTILINE)) == len(SMALL), out
    [run] = tmp_path.iterdir()
    [profile_dir] = [p for p in run.iterdir() if p.is_dir()]  # results/<time>/<profile>/
    assert {Path(name).stem for name in SMALL} <= {p.name for p in profile_dir.iterdir()}


def test_an_upstream_selftest_passes_on_a_kernel_dir(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["selftests", "--fast-guest", "--ktap", "--script", "test-ftrace.sh"]
    rc = cli_main([*args, "--kernel-dir", str(tree)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "    ok 1 livepatch interaction with ftrace_enabled sysctl" in out, out
    assert "ok 1 selftests: livepatch: test-ftrace.sh" in out, out
