"""The selftests' module and program cache: verified, rebuilt when damaged, one line
when the build fails (make and gcc are stand-ins; no kernel tree, no guest)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernel.profiles import KernelProfile
from harness.modules import build
from harness.upstream import selftests
from tests.test_build_cache import fake_ko
from tests.test_image_cache import PROFILE


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
def sources(tmp_path: Path) -> selftests.SelftestSources:
    root = tmp_path / "linux"
    modules = root / selftests.SELFTESTS / "test_modules"
    modules.mkdir(parents=True)
    for name in ("test_klp_livepatch", "test_klp_callbacks_mod"):
        (modules / f"{name}.c").write_text("/* test module */\n")
    return selftests.SelftestSources(root)


def test_modules_are_built_once_and_verified(
    make: FakeMake, sources: selftests.SelftestSources
) -> None:
    kos = selftests.build_modules(sources, PROFILE)
    assert [k.name for k in kos] == ["test_klp_callbacks_mod.ko", "test_klp_livepatch.ko"]
    assert selftests.build_modules(sources, PROFILE) == kos
    assert make.calls == 1
    kos[1].write_bytes(kos[1].read_bytes()[:50])  # truncated
    assert selftests.build_modules(sources, PROFILE) == kos
    assert make.calls == 2
    assert selftests.build_modules(sources, PROFILE) == kos and make.calls == 2
    leftovers = [p.name for p in kos[0].parent.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_failed_build_is_one_line_with_the_error(
    make: FakeMake, sources: selftests.SelftestSources
) -> None:
    make.output = "x.c:1:1: error: unknown type name 'foo'\nmake: Leaving directory '/k'\n"
    with pytest.raises(HarnessError) as info:
        selftests.build_modules(sources, PROFILE)
    message = str(info.value)
    assert "x.c:1:1: error: unknown type name 'foo'" in message and "\n" not in message
