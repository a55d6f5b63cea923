"""The selftests' module and program cache: verified, rebuilt when damaged, one line
when the build fails (make and gcc are stand-ins; no kernel tree, no guest)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.kernel import sources as kernel_sources
from harness.kernel.profiles import KernelProfile
from harness.modules import build
from harness.upstream import selftests
from tests.guest.test_image import PROFILE
from tests.modules.test_build_cache import fake_ko


class FakeMake:
    def __init__(self, profile: KernelProfile) -> None:
        self.profile = profile
        self.calls = 0
        self.output: str | None = None

    def __call__(self, argv: Sequence[str], cwd: Path) -> tuple[int, str]:
        self.calls += 1
        if self.output is not None:
            return 2, self.output
        for source in cwd.glob("test_klp_*.c"):
            info = {"vermagic": self.profile.vermagic, "name": source.stem}
            (cwd / f"{source.stem}.ko").write_bytes(fake_ko(info))
        return 0, ""


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMake:
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path / "cache"))
    fake = FakeMake(PROFILE)
    monkeypatch.setattr(build, "run_make", fake)
    return fake


@pytest.fixture
def sources(tmp_path: Path) -> kernel_sources.LivepatchSources:
    root = tmp_path / "linux"
    modules = root / kernel_sources.SELFTESTS / "test_modules"
    modules.mkdir(parents=True)
    for name in ("test_klp_livepatch", "test_klp_callbacks_mod"):
        (modules / f"{name}.c").write_text("/* test module */\n")
    return kernel_sources.LivepatchSources(root)


def test_modules_take_the_one_module_build(
    make: FakeMake, sources: kernel_sources.LivepatchSources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test modules are built, cached and verified as every module is
    (harness.modules.build, whose cache tests/modules/test_build_cache.py checks): once."""
    monkeypatch.setattr(build, "compiler_id", lambda _cc, _root: "gcc (Fake) 12.2.0")
    monkeypatch.setattr(build, "compiler_for", lambda _profile: "gcc")
    monkeypatch.setattr(build.buildroot, "root_for", lambda _profile: None)
    tree = sources.root / "build"
    tree.mkdir()
    (tree / "Makefile").write_text("")
    profile = dataclasses.replace(PROFILE, build_dir=tree)
    monkeypatch.setattr(
        selftests, "build_sources", functools.partial(build.build_sources, make=make)
    )
    kos = selftests.build_modules(sources, profile)
    assert [k.name for k in kos] == ["test_klp_callbacks_mod.ko", "test_klp_livepatch.ko"]
    assert selftests.build_modules(sources, profile) == kos
    assert make.calls == 1


def test_livepatch_test_modules_must_carry_the_flag(
    sources: kernel_sources.LivepatchSources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test module that declares itself a livepatch is checked for `livepatch=Y`."""
    (sources.modules_dir / "test_klp_livepatch.c").write_text('MODULE_INFO(livepatch, "Y");\n')
    asked: list[tuple[list[str], list[str]]] = []

    def fake_build(
        texts: dict[str, str], _profile: KernelProfile, livepatch: list[str], jobs: int
    ) -> build.BuildResult:
        asked.append((sorted(texts), list(livepatch)))
        result = build.BuildResult()
        result.modules.update({name: Path(f"/x/{name}.ko") for name in texts})
        return result

    monkeypatch.setattr(selftests, "build_sources", fake_build)
    selftests.build_modules(sources, PROFILE)
    assert asked == [(["test_klp_callbacks_mod", "test_klp_livepatch"], ["test_klp_livepatch"])]
