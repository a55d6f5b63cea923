"""profile.json is checked against the checksums recorded beside it: a damaged record
is rewritten from the unpacked kernel tree, a damaged kernel image is one clear line
(no apt, no guest: a fake unpacked tree)."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernel import profiles as kernels

RELEASE = "6.1.0-57-amd64"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An unpacked debian-6.1 profile as `setup` leaves it, in a private cache."""
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path))
    kernels._images_checked.clear()
    dest = tmp_path / "kernels" / "debian-6.1"
    (dest / "boot").mkdir(parents=True)
    (dest / "boot" / f"vmlinuz-{RELEASE}").write_bytes(bytes(range(256)) * 64)
    build = dest / "usr/src" / f"linux-headers-{RELEASE}"
    build.mkdir(parents=True)
    (build / ".config").write_text(
        "CONFIG_SMP=y\nCONFIG_PREEMPT_DYNAMIC=y\nCONFIG_MODULE_UNLOAD=y\n"
        "CONFIG_MODVERSIONS=y\nCONFIG_LIVEPATCH=y\n"
    )
    doc = dest / "usr/share/doc" / f"linux-image-{RELEASE}"
    doc.mkdir(parents=True)
    (doc / "changelog.Debian.gz").write_bytes(gzip.compress(b"linux (6.1.192-3) bookworm\n"))
    profile = kernels.describe_unpacked("debian-6.1", dest)
    kernels.write_record(profile, dest / "profile.json")
    return dest


def test_intact_record_loads(tree: Path) -> None:
    profile = kernels.load_profile("debian-6.1")
    assert profile.release == RELEASE and profile.version == "6.1.192"
    assert profile.vermagic == f"{RELEASE} SMP preempt mod_unload modversions"


def truncate(path: Path) -> None:
    path.write_text(path.read_text()[:40])


def garbage(path: Path) -> None:
    path.write_text("\x00\x01 not json")


def edited(path: Path) -> None:
    data = json.loads(path.read_text())
    data["vermagic"] = "6.1.0-1-amd64 SMP"
    path.write_text(json.dumps(data, indent=2) + "\n")


def no_checksums(path: Path) -> None:
    (path.parent / "checksums.json").unlink()


def removed(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage", [truncate, garbage, edited, no_checksums, removed])
def test_damaged_record_is_rewritten_from_the_tree(
    tree: Path, damage: Callable[[Path], None]
) -> None:
    good = kernels.load_profile("debian-6.1")
    damage(tree / "profile.json")
    assert kernels.load_profile("debian-6.1") == good
    assert kernels.read_record(tree / "profile.json") == good


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda b: b[: len(b) // 2], "bytes, 16384 were recorded (truncated?)"),
        (lambda b: bytes([b[0] ^ 1]) + b[1:], "does not match its recorded checksum"),
    ],
)
def test_damaged_kernel_image_is_one_line_naming_setup(
    tree: Path, change: Callable[[bytes], bytes], problem: str
) -> None:
    image = tree / "boot" / f"vmlinuz-{RELEASE}"
    image.write_bytes(change(image.read_bytes()))
    with pytest.raises(HarnessError) as info:
        kernels.load_profile("debian-6.1")
    message = str(info.value)
    assert problem in message and "\n" not in message
    assert message.endswith("run `klp-harness setup debian-6.1` to fetch it again")


def test_damaged_record_and_no_tree_is_one_line(tree: Path) -> None:
    truncate(tree / "profile.json")
    (tree / "boot" / f"vmlinuz-{RELEASE}").unlink()
    with pytest.raises(HarnessError, match=r"profile.json is damaged .* run `make setup`"):
        kernels.load_profile("debian-6.1")


def test_not_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path))
    with pytest.raises(HarnessError, match="not fetched yet: run `make setup`"):
        kernels.load_profile("debian-6.12")


def test_the_record_is_relative_to_the_cache_root(tree: Path) -> None:
    data = json.loads((tree / "profile.json").read_text())
    assert data["build_dir"] == f"kernels/debian-6.1/usr/src/linux-headers-{RELEASE}"
    assert not any(Path(data[key]).is_absolute() for key in kernels.PATH_FIELDS)


def test_a_moved_cache_builds_against_its_own_trees(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (tmp_path / "kernels").rename(moved / "kernels")
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(moved))
    kernels._images_checked.clear()
    profile = kernels.load_profile("debian-6.1")
    for key in kernels.PATH_FIELDS:
        assert getattr(profile, key).is_relative_to(moved), key
    assert profile.bzimage.is_file() and profile.build_dir.is_dir()


def test_an_old_absolute_record_of_a_moved_cache_is_rewritten(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record written with absolute paths (an older harness), then the cache copied
    or moved: its paths name the old place; it is rewritten from the tree."""
    record = tree / "profile.json"
    data = json.loads(record.read_text())
    for key in kernels.PATH_FIELDS:
        data[key] = f"/gone/cache/{data[key]}"
    text = json.dumps(data, indent=2) + "\n"
    record.write_text(text)
    sums = json.loads((tree / kernels.CHECKSUMS).read_text())
    sums["profile.json"] = hashlib.sha256(text.encode()).hexdigest()
    (tree / kernels.CHECKSUMS).write_text(json.dumps(sums))
    assert kernels.read_record(record) is None
    profile = kernels.load_profile("debian-6.1")
    assert profile.build_dir.is_relative_to(tmp_path)
    assert not json.loads(record.read_text())["build_dir"].startswith("/")
