"""Fetching a Debian profile through a private apt configuration, without a network:
apt is faked, its downloads are tiny .deb files built here.  A profile the registry
does not serve, or headers of another release, are one line and leave nothing in
the cache."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernel import apt, debian
from harness.kernel import profiles as kernels

ABI = "7.3.4+deb13"
RELEASE = f"{ABI}-amd64"
CONFIG = "CONFIG_SMP=y\nCONFIG_PREEMPT_DYNAMIC=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_LIVEPATCH=y\n"


def make_deb(out: Path, package: str, files: dict[str, bytes]) -> None:
    root = out / f"{package}.d"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: 7.3.4-1~bpo13+1\nArchitecture: amd64\n"
        "Maintainer: nobody <nobody@example.org>\nDescription: test\n"
    )
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    subprocess.run(
        ["dpkg-deb", "-Znone", "--root-owner-group", "-b", str(root), str(out / f"{package}.deb")],
        check=True,
        capture_output=True,
    )


class FakeApt(apt.Apt):
    """The 7.x split as trixie-backports serves it; `uts` is what the headers say."""

    def __init__(self, served: bool = True, uts: str = RELEASE) -> None:
        super().__init__(("trixie-backports", "sid"))
        self.served = served
        self.uts = uts

    def ensure_lists(self) -> None:
        pass

    def run(self, argv: list[str], cwd: Path | None = None) -> str:
        if argv[:2] == ["apt-cache", "pkgnames"]:
            return f"linux-binary-unsigned-{ABI}-amd64\n" if self.served else "linux-doc\n"
        if argv[:2] == ["apt-cache", "depends"]:
            return f"  Depends: linux-headers-{ABI}-common\n  Depends: linux-kbuild-{ABI}\n"
        assert argv[:2] == ["apt-get", "download"] and cwd is not None
        modules = f"usr/lib/modules/{RELEASE}"
        headers = f"usr/src/linux-headers-{RELEASE}"
        uts = f'#define UTS_RELEASE "{self.uts}"\n'.encode()
        include = f"include /usr/src/linux-headers-{ABI}-common/Makefile\n".encode()
        changelog = gzip.compress(b"linux (7.3.4-1~bpo13+1) trixie-backports\n")
        make_deb(cwd, "binary", {f"{modules}/vmlinuz.unsigned": b"\x90" * 4096})
        make_deb(cwd, "modules", {f"{modules}/kernel/net/x.ko.xz": b"x"})
        make_deb(
            cwd,
            "base",
            {
                f"{modules}/config": CONFIG.encode(),
                f"usr/share/doc/linux-base-{RELEASE}/changelog.Debian.gz": changelog,
            },
        )
        make_deb(
            cwd,
            "headers",
            {
                f"{headers}/.config": CONFIG.encode(),
                f"{headers}/Makefile": include,
                f"{headers}/include/generated/utsrelease.h": uts,
            },
        )
        return ""


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path))
    kernels._images_checked.clear()
    return tmp_path


def fetch(apt: FakeApt) -> kernels.KernelProfile:
    return debian._fetch("debian-7.3", debian.SERIES["debian-7.3"], apt, force=False)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("klp-fetch-*")) + sorted(
        p.name for p in (cache / "kernels").glob("*")
    )


def test_split_packages_unpack_into_a_profile(cache: Path) -> None:
    profile = fetch(FakeApt())
    dest = cache / "kernels/debian-7.3"
    assert profile.release == RELEASE and profile.version == "7.3.4"
    assert profile.bzimage == dest / f"usr/lib/modules/{RELEASE}/vmlinuz.unsigned"
    assert profile.modules_dir == dest / f"usr/lib/modules/{RELEASE}"
    assert profile.vermagic == f"{RELEASE} SMP preempt mod_unload"
    makefile = (profile.build_dir / "Makefile").read_text()
    assert "/usr/src" not in makefile and f"../linux-headers-{ABI}-common" in makefile
    assert kernels.load_profile("debian-7.3") == profile
    assert fetch(FakeApt()) == profile  # warm: reused


def test_a_profile_the_registry_does_not_serve(cache: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        fetch(FakeApt(served=False))
    message = str(exc.value)
    assert "\n" not in message
    assert "no package matching" in message and "trixie-backports, sid" in message
    assert leftovers(cache) == []


def test_headers_of_another_release_are_not_kept(cache: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        fetch(FakeApt(uts="7.3.3+deb13-amd64"))
    assert str(exc.value) == (
        "kernel profile debian-7.3: headers are for 7.3.3+deb13-amd64, "
        f"the kernel image is {RELEASE}: not kept"
    )
    assert leftovers(cache) == []


def test_private_configuration_names_only_its_suites(cache: Path) -> None:
    private = apt.Apt(("trixie-backports", "sid"))
    private._prepare()
    assert private.dir is not None and private.dir.is_relative_to(cache)
    sources = (private.dir / "sources.list").read_text().splitlines()
    assert [line.split()[-2] for line in sources] == ["trixie-backports", "sid"]
    assert all(o.startswith("-o") and "/etc/apt" not in o for o in private.options())
    assert apt.Apt().options() == []  # the host's own configuration, as it is


def test_another_release_comes_through_a_private_configuration() -> None:
    """The host's apt configuration serves only its own release (bookworm: 6.1, and 6.12
    from bookworm-security); 7.x's suites never reach the host's apt sources."""
    assert debian.apt_for("debian-6.1").suites == debian.apt_for("debian-6.12").suites == ()
    assert debian.apt_for("debian-7.3").suites == ("trixie-backports", "sid")


def test_series_names_are_the_profiles() -> None:
    assert list(debian.SERIES) == kernels.profile_names()
    assert debian._literal_prefix(debian.SERIES["debian-7.3"].package) == "linux-binary-unsigned-"
