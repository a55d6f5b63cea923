"""Build roots without a network: which profiles need one, the bwrap command line, and
a root that cannot be made (mmdebstrap faked) is one line with nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernel import buildroot
from harness.kernel.profiles import KernelProfile


def profile(tmp_path: Path, name: str, release: str) -> KernelProfile:
    config = tmp_path / f"{len(name)}-{release}.config"
    config.write_text(
        'CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"\n'
        "CONFIG_GCC_VERSION=140200\n"
    )
    return KernelProfile(
        name, release, "7.3.4", f"{release} SMP", tmp_path, tmp_path, tmp_path, config, True
    )


def test_which_profiles_build_in_a_root(tmp_path: Path) -> None:
    assert buildroot.suite_for(profile(tmp_path, "debian-7.3", "7.3.4+deb13-amd64")) == "trixie"
    assert buildroot.suite_for(profile(tmp_path, "x", "7.2.13+deb14-amd64")) == "sid"
    assert buildroot.suite_for(profile(tmp_path, "debian-6.12", "6.12.117+deb12-amd64")) is None
    assert buildroot.suite_for(profile(tmp_path, "debian-6.1", "6.1.0-57-amd64")) is None
    assert buildroot.suite_for(profile(tmp_path, f"dir:{tmp_path}", "7.3.0+deb13-amd64")) is None
    seven = profile(tmp_path, "debian-7.3", "7.3.4+deb13-amd64")
    assert buildroot.compiler(seven) == ("x86_64-linux-gnu-gcc-14", "gcc-14")
    assert "gcc-14" in buildroot.packages_for(seven) and "make" in buildroot.packages_for(seven)


def test_a_tree_built_in_a_root_names_it(tmp_path: Path) -> None:
    """A `--kernel-dir` tree whose kbuild tools were linked in a build root is built
    against there, with the root's versioned compiler; a root that is gone is one line."""
    tree = profile(tmp_path, f"dir:{tmp_path}", "7.3.4")  # build_dir: tmp_path
    assert buildroot.root_for(tree) is None and buildroot.cc_for(tree) is None
    root = tmp_path / "root"
    root.mkdir()
    (root / buildroot.MARKER).write_text("")
    (tmp_path / buildroot.TREE_ROOT).write_text(f"{root}\n")
    assert buildroot.root_for(tree) == root
    assert buildroot.cc_for(tree) == "gcc-14"
    (root / buildroot.MARKER).unlink()
    with pytest.raises(HarnessError, match="which is not a build root any more"):
        buildroot.root_for(tree)


def test_wrap_binds_host_paths_at_their_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin").symlink_to("usr/bin")
    tree, work = tmp_path / "tree", tmp_path / "work"
    cmd = buildroot.wrap(root, ["make", "-C", str(tree)], work, [tree], [work])
    assert cmd[0] == "bwrap" and cmd[-4:] == ["--", "make", "-C", str(tree)]
    text = " ".join(cmd)
    assert f"--ro-bind {root / 'usr'} /usr" in text and "--symlink usr/bin /bin" in text
    assert f"--ro-bind {tree} {tree}" in text and f"--bind {work} {work}" in text
    assert f"--chdir {work}" in text and "--die-with-parent" in text


def test_a_root_that_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mmdebstrap"
    fake.write_text(
        '#!/bin/sh\nfor a; do last="$a"; done\nmkdir -p "$4" 2>/dev/null\n'
        'echo "E: cannot download packages: gcc-14" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    (bin_dir / "unshare").write_text('#!/bin/sh\nshift 3\nexec "$@"\n')
    (bin_dir / "unshare").chmod(0o755)
    (bin_dir / "bwrap").symlink_to("/bin/true")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(HarnessError) as exc:
        buildroot.ensure("trixie", ["gcc-14", "make"], "debian-7.3", "x86_64-linux-gnu-gcc-14")
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("build root for debian-7.3 (trixie) could not be made: ")
    assert "E: cannot download packages: gcc-14" in message
    roots = tmp_path / "cache/buildroots"
    assert sorted(p.name for p in roots.iterdir() if not p.name.startswith(".")) == [
        "failed-trixie.log"
    ]
