"""`--kernel-dir DIR` refuses a tree that cannot work before anything is built or booted:
one line naming what is missing and the recipe (docs/own-kernel.md); a usable tree
says which model rules its version gets (fake trees, no kernel, no guest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.guest import vm
from harness.kernel import kconfig
from harness.kernel import profiles as kernels
from harness.modules import build, kbuild
from tests.kernel.test_kconfig import COMPLETE

RELEASE = "6.9.0-klp"


def make_tree(root: Path, config: str = COMPLETE, release: str = RELEASE) -> Path:
    """The files `make bzImage modules && make modules_install INSTALL_MOD_PATH=mod-install`
    leave that the harness reads."""
    tree = root / "linux"
    (tree / "include/config").mkdir(parents=True)
    (tree / "include/config/kernel.release").write_text(release + "\n")
    (tree / "arch/x86/boot").mkdir(parents=True)
    (tree / "arch/x86/boot/bzImage").write_bytes(b"\0" * 64)
    (tree / ".config").write_text(config + "\n")
    modules = tree / "mod-install/lib/modules" / release
    modules.mkdir(parents=True)
    (modules / "modules.order").write_text(
        "".join(f"kernel/drivers/virtio/{m}.ko\n" for m in kconfig.GUEST_MODULES.values())
    )
    return tree


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any build or guest fails the test; the cache is private."""
    monkeypatch.setenv("KLP_HARNESS_CACHE", str(tmp_path / "cache"))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("work started for a tree that should have been refused")

    monkeypatch.setattr(vm.Guest, "__enter__", refuse)
    monkeypatch.setattr(kbuild, "run_make", refuse)


def remove(path: str) -> Callable[[Path], None]:
    return lambda tree: (tree / path).unlink()


def set_config(text: str) -> Callable[[Path], None]:
    return lambda tree: (tree / ".config").write_text(text)


def modular(tree: Path) -> None:
    (tree / ".config").write_text(
        COMPLETE.replace("CONFIG_VIRTIO_CONSOLE=y", "CONFIG_VIRTIO_CONSOLE=m")
    )


def rmtree_modules(tree: Path) -> None:
    modular(tree)
    order = tree / "mod-install/lib/modules" / RELEASE / "modules.order"
    order.unlink()
    order.parent.rmdir()


def stale_modules(tree: Path) -> None:
    modular(tree)
    order = tree / "mod-install/lib/modules" / RELEASE / "modules.order"
    order.write_text("kernel/drivers/virtio/virtio_pci.ko\n")


REFUSALS = [
    ("no bzImage", remove("arch/x86/boot/bzImage"), "missing arch/x86/boot/bzImage (build it"),
    ("no .config", remove(".config"), "missing .config"),
    ("not built", remove("include/config/kernel.release"), "missing include/config/kernel.release"),
    (
        "no dynamic debug",
        set_config(COMPLETE.replace("CONFIG_DYNAMIC_DEBUG=y", "")),
        "CONFIG_DYNAMIC_DEBUG is not set (the runner turns on livepatch's pr_debug lines",
    ),
    (
        "no kallsyms_all",
        set_config(COMPLETE.replace("CONFIG_KALLSYMS_ALL=y", "")),
        "CONFIG_KALLSYMS_ALL is not set (LIVEPATCH depends on it",
    ),
    (
        "modules not installed",
        rmtree_modules,
        "modules not installed: no {tree}/mod-install/lib/modules/6.9.0-klp/modules.order "
        "(the guest loads virtio_console from there): run `make modules_install "
        "INSTALL_MOD_PATH=mod-install`",
    ),
    (
        "modules of another build",
        stale_modules,
        "modules not installed for this build: {tree}/mod-install/lib/modules/6.9.0-klp/"
        "modules.order lists no virtio_console",
    ),
]


@pytest.mark.parametrize("command", ["run", "build", "selftests"])
@pytest.mark.parametrize(("what", "breakage", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_tree_is_one_line_with_the_recipe(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_work: None,
    command: str,
    what: str,
    breakage: Callable[[Path], None],
    message: str,
) -> None:
    tree = make_tree(tmp_path)
    breakage(tree)
    spec = Path(__file__).parents[1] / "scenarios/upstream/01_livepatch_basic.toml"
    args = {"run": ["run", str(spec)], "build": ["build", str(spec)], "selftests": ["selftests"]}
    assert cli_main([*args[command], "--kernel-dir", str(tree)]) == 2, what
    err = capsys.readouterr().err
    assert err.startswith(f"klp-harness: error: --kernel-dir {tree}: "), err
    assert err.count("\n") == 1, err
    assert message.format(tree=tree) in err
    assert str(kconfig.RECIPE) in err


def test_not_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    assert cli_main(["selftests", "--kernel-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and str(kconfig.RECIPE) in err


def test_usable_tree_warns_of_optional_features_and_names_its_model_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    from harness.commands.common import tree_profile

    tree = make_tree(tmp_path, COMPLETE.replace("CONFIG_KFENCE=y", ""), release="6.11.0-rc2+")
    profile = tree_profile(str(tree), guest=True, model=True)
    assert profile.name == f"dir:{tree}" and profile.series == "6.11"
    assert profile.modules_dir == tree / "mod-install/lib/modules/6.11.0-rc2+"
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"klp-harness: warning: --kernel-dir {tree}: KFENCE memory checks: CONFIG_KFENCE "
        "is not set (kfence.sample_interval is ignored: no sampled use-after-free detection)",
        f"klp-harness: --kernel-dir {tree}: kernel 6.11.0: the model applies its 6.1 "
        "rules, with klp_relocs_cleared (v6.3), sysfs_replace (v6.11)",
    ]


def test_built_in_guest_drivers_need_no_installed_modules(tmp_path: Path, no_work: None) -> None:
    tree = make_tree(tmp_path)
    rmtree = tree / "mod-install/lib/modules" / RELEASE
    (rmtree / "modules.order").unlink()
    assert kernels.profile_from_tree(tree).release == RELEASE


def test_a_rebuilt_tree_gets_new_module_cache_keys(tmp_path: Path, no_work: None) -> None:
    """Same path, same release, new kernel image: modules built against the old
    headers are not reused.  Debian's profiles keep their keys."""
    tree = make_tree(tmp_path)
    before = build.module_key("m", "int x;\n", kernels.profile_from_tree(tree), "gcc 12")
    (tree / "arch/x86/boot/bzImage").write_bytes(b"\1" * 65)
    after = build.module_key("m", "int x;\n", kernels.profile_from_tree(tree), "gcc 12")
    assert before != after
    debian = kernels.profile_from_tree(tree)
    named = type(debian)(**{**debian.__dict__, "name": "debian-6.1"})
    assert kernels.tree_identity(named) == ""


def test_a_tree_older_than_the_model_is_refused_where_the_model_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    from harness.commands.common import tree_profile

    tree = make_tree(tmp_path, release="5.15.0")
    spec = Path(__file__).parents[1] / "scenarios/upstream/01_livepatch_basic.toml"
    assert cli_main(["run", str(spec), "--kernel-dir", str(tree)]) == 2
    err = capsys.readouterr().err
    from harness.model.profiles import PROFILES

    known = ", ".join(PROFILES)
    assert err == (
        f"klp-harness: error: the model knows no kernel series '5.15' (known: {known}, "
        "and later series by the newest of them not newer)\n"
    )
    assert tree_profile(str(tree)).release == "5.15.0"  # build, boot, selftests: fine


def test_selftests_of_an_o_build_dir_come_from_its_source_link(
    tmp_path: Path, no_work: None
) -> None:
    """`make O=BUILD` leaves the sources out of BUILD and links them as BUILD/source."""
    from harness.kernel import sources

    build_dir = make_tree(tmp_path)
    source = tmp_path / "src"
    (source / sources.SELFTESTS).mkdir(parents=True)
    (build_dir / "source").symlink_to(source)
    profile = kernels.profile_from_tree(build_dir)
    assert sources.fetch_sources(profile).root == build_dir / "source"
    (build_dir / sources.SELFTESTS).mkdir(parents=True)  # an in-tree build: its own
    assert sources.fetch_sources(profile).root == build_dir
