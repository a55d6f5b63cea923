"""A user's tree of any version gets model rules: the newest known series not newer
than it, each later difference set by the version that introduced it."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.model import predict
from harness.model.profiles import (
    PROFILES,
    SINCE,
    describe_choice,
    model_series,
    profile_for,
)
from harness.scenario.loader import load_scenario
from tests.scenario.test_loader import SCENARIOS


@pytest.mark.parametrize(
    ("version", "series"),
    [
        ("6.1.192", "6.1"),
        ("6.9.0", "6.1"),
        ("6.11.0-rc2+", "6.1"),
        ("6.12.117", "6.12"),
        ("6.14.3", "6.12"),
        ("7.0", "6.12"),
        ("7.2.13", "6.12"),
        ("7.3.4", "7.3"),
        ("10.2", "7.3"),
    ],
)
def test_model_series_is_the_newest_known_not_newer(version: str, series: str) -> None:
    assert model_series(version) == series


def test_known_profiles_agree_with_when_each_difference_appeared() -> None:
    for series, profile in PROFILES.items():
        major, minor = (int(x) for x in series.split("."))
        for name, first in SINCE.items():
            assert getattr(profile, name) == ((major, minor) >= first), (series, name)
        assert profile_for(series) is profile


@pytest.mark.parametrize(
    ("series", "replace", "stack_order"),
    [("6.9", False, False), ("6.11", True, False), ("6.13", True, False), ("7.1", True, True)],
)
def test_other_series_get_each_difference_by_version(
    series: str, replace: bool, stack_order: bool
) -> None:
    profile = profile_for(series)
    assert (profile.series, profile.sysfs_replace, profile.sysfs_stack_order) == (
        series,
        replace,
        stack_order,
    )


@pytest.mark.parametrize("series", ["next", "5.15", "6.0"])
def test_not_a_version_or_older_than_the_model_is_refused(series: str) -> None:
    with pytest.raises(UsageError, match=f"knows no kernel series '{series}'"):
        profile_for(series)


def test_describe_choice_says_the_rules_and_what_is_not_modelled() -> None:
    assert describe_choice("6.12.117") == "kernel 6.12.117: the model applies its 6.12 rules"
    assert describe_choice("6.11.0") == (
        "kernel 6.11.0: the model applies its 6.1 rules, with klp_relocs_cleared (v6.3), "
        "sysfs_replace (v6.11)"
    )
    assert describe_choice("6.14.0") == (
        "kernel 6.14.0: the model applies its 6.12 rules, with sysfs_stack_order (v6.14), "
        "kprobe_arm_error_lost (v6.14)"
    )
    assert describe_choice("7.3.4") == "kernel 7.3.4: the model applies its 7.3 rules"


def test_a_tree_between_the_profiles_predicts_like_its_rules() -> None:
    """6.9 predicts exactly as 6.1; 6.11 adds the replace attribute to sysfs."""
    scenario = load_scenario(SCENARIOS / "upstream/19_sysfs.toml")
    assert predict(scenario, "6.9") == predict(scenario, "6.1")
    with_replace = predict(scenario, "6.11")
    assert with_replace == predict(scenario, "6.12")
    assert any(key.endswith("/replace") for r in with_replace for key in r.sysfs)


def test_7_3_shows_stack_order_and_refuses_ftrace_off() -> None:
    """stack_order is each patch's place in klp_patches; ftrace_enabled=0 is refused
    with EOPNOTSUPP, so a patch still loads afterwards (7.3 ftrace.c)."""
    multiple = predict(load_scenario(SCENARIOS / "upstream/02_livepatch_multiple.toml"), "7.3")
    orders = {k: v for r in multiple for k, v in r.sysfs.items() if k.endswith("/stack_order")}
    assert sorted(set(orders.values())) == ["1", "2"]
    ftrace = predict(load_scenario(SCENARIOS / "upstream/22_ftrace_enabled.toml"), "7.3")
    assert ftrace[0].errno == 95 and ftrace[0].log == [
        'livepatch: sysctl: setting key "kernel.ftrace_enabled": Operation not supported'
    ]
    assert ftrace[1].errno == 0  # ftrace stayed on: the patch loads
    assert not any(
        k.endswith("/stack_order")
        for r in predict(load_scenario(SCENARIOS / "upstream/19_sysfs.toml"), "6.12")
        for k in r.sysfs
    )
