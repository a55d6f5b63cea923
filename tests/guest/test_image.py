"""The initramfs cache: an image is used only if it matches the checksum recorded when
it was written; truncated or corrupted ones are rebuilt (no guest, no dpkg: the plan
and the build are stand-ins)."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import files
from harness.files import sum_path
from harness.guest import image
from harness.kernel.profiles import KernelProfile


class FakeBuild:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def __call__(self, plan: image.ImagePlan, scratch: Path, out: Path) -> None:
        self.calls += 1
        (scratch / "root").mkdir()
        if self.fail:
            out.write_bytes(b"half")
            raise OSError(28, "No space left on device")
        out.write_bytes(gzip.compress(b"070701" + bytes(range(256)) * 400))


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBuild:
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path / "cache"))
    plan = image.ImagePlan("6.1.0-57-amd64", tmp_path / "modules", {"bash": "5.2"})
    monkeypatch.setattr(image, "plan_image", lambda profile: plan)
    fake = FakeBuild()
    monkeypatch.setattr(image, "_build", fake)
    return fake


PROFILE = KernelProfile(
    name="debian-6.1",
    release="6.1.0-57-amd64",
    version="6.1.192",
    vermagic="6.1.0-57-amd64 SMP preempt mod_unload modversions",
    bzimage=Path("/nonexistent/bzImage"),
    build_dir=Path("/nonexistent/build"),
    modules_dir=Path("/nonexistent/modules"),
    config=Path("/nonexistent/config"),
    livepatch=True,
)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def drop_sum_and_truncate(path: Path) -> None:
    sum_path(path).unlink()
    truncate(path)


def test_image_is_built_once_with_its_checksum(builder: FakeBuild) -> None:
    first = image.ensure_image(PROFILE)
    assert sum_path(first).read_text().split()[1] == first.name
    assert image.ensure_image(PROFILE) == first
    assert builder.calls == 1
    assert [p.name for p in first.parent.iterdir() if p.name.startswith(".build")] == []


@pytest.mark.parametrize("damage", [truncate, flip, drop_sum_and_truncate])
def test_damaged_image_is_rebuilt(builder: FakeBuild, damage: Callable[[Path], None]) -> None:
    first = image.ensure_image(PROFILE)
    good = first.read_bytes()
    damage(first)
    # Damaged between runs: a new process has not checked the file yet.  (Within one
    # process a same-size rewrite inside one coarse mtime tick would look unchanged.)
    files._verified.clear()
    assert image.ensure_image(PROFILE) == first
    assert builder.calls == 2
    assert first.read_bytes() == good


def test_intact_image_from_before_checksums_is_adopted(builder: FakeBuild) -> None:
    first = image.ensure_image(PROFILE)
    sum_path(first).unlink()
    assert image.ensure_image(PROFILE) == first
    assert builder.calls == 1
    assert sum_path(first).is_file()


def test_failed_build_leaves_no_image_and_no_scratch(builder: FakeBuild) -> None:
    builder.fail = True
    with pytest.raises(OSError, match="No space left"):
        image.ensure_image(PROFILE)
    images = image.images_dir()
    assert list(images.iterdir()) == []
    builder.fail = False
    assert image.ensure_image(PROFILE).is_file()


def test_scratch_of_a_killed_build_is_swept(builder: FakeBuild) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = image.images_dir() / f".build-{dead.pid}-abcdefgh"
    (abandoned / "root").mkdir(parents=True)
    image.ensure_image(PROFILE)
    assert not abandoned.exists()


def test_damaged_ldd_cache_is_asked_again(builder: FakeBuild) -> None:
    cache = image.images_dir() / "ldd-cache.json"
    cache.write_text('{"/usr/bin/bash": {"stat": [1, 2], "libs": "not a list"}, "x": 3}')
    assert image._read_ldd_cache(cache) == {}
    cache.write_text('{"/usr/bin/bash": {"stat": [1')
    assert image._read_ldd_cache(cache) == {}
