"""The package as a user installs it: `pip install 'klp-harness[fuzz]'` into a clean
venv (the machine's package index), then every verb's --help, a model-only fuzz run
and pytest's `-n` without pytest-xdist.  An import the package does not declare fails
here (slow: a minute of installing; no VM, no kernel headers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from harness.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def test_a_clean_install_runs_every_verb(tmp_path: Path) -> None:
    source = tmp_path / "source"  # what the package is made of, not the work tree's debris
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "harness", source / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [venv / "bin" / "pip", "install", "-q", f"{source}[fuzz]"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    cli = venv / "bin" / "klp-harness"
    for verb in COMMANDS:
        shown = subprocess.run([cli, verb, "--help"], capture_output=True, text=True, timeout=120,
                               check=False)  # fmt: skip
        assert shown.returncode == 0, (verb, shown.stderr)
        assert "exit codes:" in shown.stdout, verb
    fuzz = subprocess.run(
        [cli, "fuzz", "--model-only", "--budget", "5s", "--shrink-budget", "5s",
         "--results", str(tmp_path / "fuzz")],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert fuzz.returncode == 0, fuzz.stdout + fuzz.stderr
    assert "branch coverage" in fuzz.stderr
    parallel = subprocess.run(
        [venv / "bin" / "python", "-m", "pytest", "-n", "2", "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path / "fuzz",
    )  # fmt: skip
    assert parallel.returncode != 0
    assert "-n needs pytest-xdist, which is not installed: pip install 'klp-harness[parallel]'" in (
        parallel.stderr
    )
