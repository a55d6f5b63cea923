"""The kernel config check (harness.kernel.kconfig) on config text: every missing option named
with what it breaks, required ones as errors and optional ones as warnings; the
fragment users merge (docs/klp-harness.config) satisfies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.kernel import kconfig
from harness.kernel.profiles import load_profile, profile_names, read_config

# What ARCH=x86_64 selects by itself: options a user cannot set, which the fragment
# therefore leaves out.
SELECTED_BY_ARCH = {
    "CONFIG_X86_64": "y",
    "CONFIG_HAVE_LIVEPATCH": "y",
    "CONFIG_HAVE_RELIABLE_STACKTRACE": "y",
    "CONFIG_DYNAMIC_FTRACE_WITH_REGS": "y",
}
FRAGMENT = kconfig.fragment_options(kconfig.FRAGMENT.read_text())
# A .config with everything the harness wants (as a defconfig merged with the
# fragment ends up), in .config syntax.
COMPLETE = "\n".join(
    f"# {key} is not set" if value == kconfig.UNSET else f"{key}={value}"
    for key, value in {**FRAGMENT, **SELECTED_BY_ARCH, "CONFIG_SMP": "y"}.items()
)


def config(text: str) -> dict[str, str]:
    """Parse config text as harness.kernel.profiles.read_config does."""
    return kconfig.fragment_options(text)


def without(name: str, text: str = COMPLETE) -> str:
    return "\n".join(line for line in text.splitlines() if f"CONFIG_{name}=" not in line)


def test_the_fragment_merged_satisfies_every_check() -> None:
    report = kconfig.check(config(COMPLETE))
    assert report.ok and not report.errors and not report.warnings


def test_every_option_the_check_knows_is_in_the_fragment_or_selected_by_the_arch() -> None:
    for option in (*kconfig.REQUIRED, *kconfig.OPTIONAL):
        keys = {f"CONFIG_{name}" for name in option.names}
        assert keys & (set(FRAGMENT) | set(SELECTED_BY_ARCH)), option.names


@pytest.mark.parametrize("option", kconfig.REQUIRED, ids=[o.names[0] for o in kconfig.REQUIRED])
def test_each_missing_required_option_is_an_error_saying_what_it_breaks(
    option: kconfig.Option,
) -> None:
    cfg = config(COMPLETE)
    for name in option.names:
        if option.values == (kconfig.UNSET,):
            cfg[f"CONFIG_{name}"] = "y"
        else:
            cfg.pop(f"CONFIG_{name}", None)
    report = kconfig.check(cfg)
    assert not report.ok and len(report.errors) == 1, report.errors
    assert f"CONFIG_{option.names[0]}" in report.errors[0]
    assert option.breaks in report.errors[0]
    assert not report.warnings


@pytest.mark.parametrize("option", kconfig.OPTIONAL, ids=[o.names[0] for o in kconfig.OPTIONAL])
def test_each_missing_optional_option_is_a_warning_naming_its_feature(
    option: kconfig.Option,
) -> None:
    report = kconfig.check(config(without(option.names[0])))
    assert report.ok
    assert report.warnings == [
        f"{option.feature}: CONFIG_{option.names[0]} is not set ({option.breaks})"
    ]


def test_alternatives_either_one_does() -> None:
    text = without("DYNAMIC_FTRACE_WITH_REGS")
    assert not kconfig.check(config(text)).ok
    assert kconfig.check(config(text + "\nCONFIG_DYNAMIC_FTRACE_WITH_ARGS=y")).ok
    error = kconfig.check(config(text)).errors[0]
    assert "DYNAMIC_FTRACE_WITH_REGS is not set and CONFIG_DYNAMIC_FTRACE_WITH_ARGS" in error


def test_values_a_module_where_livepatch_needs_built_in() -> None:
    text = COMPLETE.replace("CONFIG_DEBUG_FS=y", "CONFIG_DEBUG_FS=m")
    assert kconfig.check(config(text)).errors[0].startswith("CONFIG_DEBUG_FS=m, needs y (")
    # guest drivers may be modules: the guest loads them from the installed tree
    text = COMPLETE.replace("CONFIG_VIRTIO_NET=y", "CONFIG_VIRTIO_NET=m")
    assert kconfig.check(config(text)).ok
    assert kconfig.modular_guest_drivers(config(text)) == ["virtio_net"]


def test_forbidden_option_set() -> None:
    report = kconfig.check(config(COMPLETE + "\nCONFIG_MODULE_SIG_FORCE=y"))
    assert report.errors == [
        "CONFIG_MODULE_SIG_FORCE=y, must not be set (the generated modules are unsigned: "
        "the kernel would refuse every one)"
    ]


def test_an_empty_config_names_every_required_option_in_one_line() -> None:
    report = kconfig.check({})
    assert len(report.errors) == len(kconfig.REQUIRED) - 2  # two must merely be unset
    line = report.error_line("--kernel-dir /x")
    assert "\n" not in line
    assert line.startswith("--kernel-dir /x: its .config lacks what the harness needs: ")
    assert line.endswith(f"Recipe: {kconfig.RECIPE} (merge klp-harness.config into the config)")
    assert "Recipe" not in report.error_line("debian-6.1", recipe=False)


def test_the_recipe_and_fragment_exist() -> None:
    assert kconfig.RECIPE.is_file() and kconfig.FRAGMENT.is_file()
    assert "merge_config.sh" in kconfig.RECIPE.read_text()


@pytest.mark.kbuild
@pytest.mark.parametrize("name", profile_names())
def test_debian_profiles_have_what_the_harness_needs(name: str) -> None:
    """The real configs (setup runs the same check): 6.1 lacks only KFENCE."""
    report = kconfig.check(read_config(load_profile(name).config))
    assert report.ok, report.errors
    expected = ["KFENCE memory checks"] if name == "debian-6.1" else []
    assert [w.split(":")[0] for w in report.warnings] == expected


def test_setup_refuses_a_debian_config_that_lost_an_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A future Debian kernel without an option fails `setup`, by name, not a scenario."""
    from harness.commands.setup import check_config
    from harness.errors import HarnessError
    from harness.kernel.profiles import KernelProfile

    def profile(text: str) -> KernelProfile:
        config = tmp_path / ".config"
        config.write_text(text)
        return KernelProfile(
            "debian-6.1",
            "6.1.0-57-amd64",
            "6.1.192",
            "",
            tmp_path,
            tmp_path,
            tmp_path,
            config,
            True,
        )

    check_config(profile(without("KFENCE")))
    assert capsys.readouterr().err == (
        "setup: debian-6.1: warning: KFENCE memory checks: CONFIG_KFENCE is not set "
        "(kfence.sample_interval is ignored: no sampled use-after-free detection)\n"
    )
    with pytest.raises(HarnessError) as info:
        check_config(profile(without("DYNAMIC_DEBUG")))
    assert str(info.value).startswith(
        f"debian-6.1 ({tmp_path}/.config): its .config lacks what the harness needs: "
        "CONFIG_DYNAMIC_DEBUG is not set (the runner turns on livepatch's pr_debug lines"
    )
    assert "Recipe" not in str(info.value)
