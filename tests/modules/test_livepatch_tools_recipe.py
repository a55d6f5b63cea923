"""images/livepatch-tools/recipe.py's kpatch-build step without its builds (an hour
each on these two CPUs): kpatch-build is faked at the point the recipe runs it, so
what is tested is the recipe's handling of its outcome.  A failure the diff's
`.kpatch-build-fails` file names, and this try's build.log shows, is recorded and not
tried again with the same kpatch-build; any other failure is raised, also when an
earlier try's log held the known line; a diff that builds is stamped."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "images" / "livepatch-tools" / "recipe.py"
KNOWN = """\
kpatch-build 0.9.11 on 7.3.4: objtool exits 255 on the patch module's object.
log: file already has .orc_unwind section, skipping
log: Error 255
"""


def load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("livepatch_tools_recipe", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeKpatchBuild:
    """Stands in for run_in(): writes kpatch-build's build.log for this try (none when
    the name maps to None: kpatch-build failed before it logged), then fails
    (CalledProcessError, as subprocess.run(check=True)) or makes the module."""

    def __init__(self, recipe: ModuleType, logs: dict[str, str | None], fails: set[str]) -> None:
        self.recipe, self.logs, self.fails = recipe, logs, fails
        self.tried: list[str] = []

    def __call__(
        self,
        root: Path,
        argv: Sequence[str],
        cwd: Path,
        writable: Sequence[Path],
        read_only: Sequence[Path] = (),
    ) -> None:
        name = argv[argv.index("-n") + 1]
        self.tried.append(name)
        text = self.logs.get(name, "all fine\n")
        if text is not None:
            log = self.recipe.kpatch_log()
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(text)
        if name in self.fails:
            raise subprocess.CalledProcessError(1, list(argv))
        (cwd / f"{name}.ko").write_bytes(b"\x7fELF")


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path / "cache"))
    module = load_recipe()
    diffs = tmp_path / "diffs"
    diffs.mkdir()
    for name in ("a-vmlinux", "b-module"):
        (diffs / f"{name}.patch").write_text(f"--- {name}\n")
    (diffs / "b-module.kpatch-build-fails").write_text(KNOWN)
    program = tmp_path / "kpatch/usr/bin/kpatch-build"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    source = tmp_path / "linux"
    source.mkdir()
    monkeypatch.setattr(module, "DIFFS", sorted(diffs.glob("*.patch")))
    monkeypatch.setattr(module, "klp_root", lambda: tmp_path / "root")
    monkeypatch.setattr(module, "source", lambda: source)
    monkeypatch.setattr(module, "kpatch_tools", lambda: program)
    monkeypatch.setattr(module, "kpatch_source", lambda refresh=False: tmp_path / "copy")
    return module


def _times(recipe: ModuleType) -> dict[str, dict[str, object]]:
    times: dict[str, dict[str, object]] = json.loads((recipe.work() / "times.json").read_text())
    return times


def test_a_known_failure_is_recorded_and_not_tried_again(
    recipe: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = "create-diff-object: changed function: dummy_check\n" + (
        "file already has .orc_unwind section, skipping\nmake: *** Error 255\n"
    )
    fake = FakeKpatchBuild(recipe, {"livepatch-b-module": log}, {"livepatch-b-module"})
    monkeypatch.setattr(recipe, "run_in", fake)
    recipe.kpatch_build()
    out = recipe.out("kpatch-build")
    assert (out / "livepatch-a-vmlinux.ko").is_file()  # the other diff still builds
    assert (out / "livepatch-b-module.known-failure").is_file()
    assert _times(recipe)["kpatch-build b-module"]["failed"] == KNOWN.splitlines()[0]
    assert "fails, as known: kpatch-build 0.9.11 on 7.3.4" in capsys.readouterr().out

    fake.tried.clear()
    recipe.kpatch_build()
    assert fake.tried == []  # a built one is kept, a known failure not tried again
    assert "not tried again" in capsys.readouterr().out


def test_a_new_kpatch_build_tries_a_known_failure_again(
    recipe: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = "file already has .orc_unwind section, skipping\nError 255\n"
    fake = FakeKpatchBuild(recipe, {"livepatch-b-module": log}, {"livepatch-b-module"})
    monkeypatch.setattr(recipe, "run_in", fake)
    recipe.kpatch_build()
    (tmp_path / "kpatch/usr/bin/kpatch-build").write_text("#!/bin/sh\n# 0.9.12\n")
    fake.tried.clear()
    recipe.kpatch_build()
    assert fake.tried == ["livepatch-b-module"]


def test_another_failure_is_raised_even_after_a_known_one_was_logged(
    recipe: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log is this try's: an earlier try's known lines do not excuse a failure
    that came before kpatch-build wrote its log."""
    stale = recipe.kpatch_log()
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("file already has .orc_unwind section, skipping\nError 255\n")
    logs: dict[str, str | None] = {"livepatch-a-vmlinux": None, "livepatch-b-module": None}
    fake = FakeKpatchBuild(recipe, logs, {"livepatch-b-module"})
    monkeypatch.setattr(recipe, "run_in", fake)
    with pytest.raises(subprocess.CalledProcessError):
        recipe.kpatch_build()
    assert not (recipe.out("kpatch-build") / "livepatch-b-module.known-failure").exists()


def test_a_diff_without_a_fails_file_raises(
    recipe: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = "file already has .orc_unwind section, skipping\nError 255\n"
    fake = FakeKpatchBuild(recipe, {"livepatch-a-vmlinux": log}, {"livepatch-a-vmlinux"})
    monkeypatch.setattr(recipe, "run_in", fake)
    with pytest.raises(subprocess.CalledProcessError):
        recipe.kpatch_build()


def test_the_shipped_fails_file_names_lines_of_its_own_log() -> None:
    """The committed known failure says why on its first line and what the log must
    show on `log:` lines."""
    recipe = load_recipe()
    known = [
        p for d in recipe.DIFFS if (p := d.with_name(f"{d.stem}.kpatch-build-fails")).is_file()
    ]
    assert known, "no diff is known to fail"
    for path in known:
        lines = path.read_text().splitlines()
        assert lines[0] and not lines[0].startswith("log: ")
        assert any(line.startswith("log: ") for line in lines[1:])
