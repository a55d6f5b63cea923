"""Sharding, job counts and guest health checks of the runner (no VM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.runner import reset
from harness.runner.suite import Shard, default_jobs, shard_key

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def test_shards_split_every_scenario_exactly_once() -> None:
    keys = [shard_key(p) for p in sorted(SCENARIOS.rglob("*.toml"))]
    assert len(keys) > 40
    parts = [[k for k in keys if Shard(i, 3).holds(k)] for i in (1, 2, 3)]
    assert sorted(k for part in parts for k in part) == sorted(keys)
    assert all(parts)  # each part gets some


def test_shard_key_is_the_same_from_any_checkout() -> None:
    one = Path("/a/tests/scenarios/upstream/01_livepatch_basic.toml")
    two = Path("/elsewhere/x/scenarios/upstream/01_livepatch_basic.toml")
    assert shard_key(one) == shard_key(two) == "upstream/01_livepatch_basic.toml"


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_bad_shards_are_one_line_errors(text: str) -> None:
    with pytest.raises(HarnessError, match="--shard"):
        Shard.parse(text)


def test_default_jobs_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLP_HARNESS_JOBS", "3")
    assert default_jobs() == 3
    monkeypatch.setenv("KLP_HARNESS_JOBS", "nonsense")
    assert default_jobs() >= 1


def test_taint_from_modules_and_livepatch_is_expected_warn_is_not() -> None:
    livepatch, oot, unsigned, warn, die = 1 << 15, 1 << 12, 1 << 13, 1 << 9, 1 << 7
    assert reset.unexpected_taint(0, livepatch | oot | unsigned) == ""
    assert reset.unexpected_taint(0, livepatch | warn) == "W"
    assert reset.unexpected_taint(warn, warn | die) == "D"  # only what is new
    assert reset.taint_letters(livepatch | oot | unsigned) == "OEK"


class FakeShell:
    def __init__(self, out: str) -> None:
        self.out = out

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> object:
        from harness.guest.result import CommandResult

        return CommandResult(0, self.out, "")


def test_guest_state_parsed_and_checked_against_the_baseline() -> None:
    out = "@@patches\np1\n@@modules\nvirtio_net\np1\n@@ftrace\n1\n@@taint\n33280\n"
    baseline = reset.GuestBaseline(frozenset({"virtio_net"}), 0)
    problems = reset.verify_clean(FakeShell(out), baseline)  # type: ignore[arg-type]
    assert problems == [
        "patches still registered: p1",
        "modules still loaded: p1",
        "kernel taint raised: W",  # 33280 = K (1<<15) | W (1<<9)
    ]


def test_capacity_is_the_smallest_count_near_the_best() -> None:
    from harness.runner.capacity import choose

    assert choose({1: 1.0, 2: 1.95, 3: 1.9}) == 2  # a third guest only queues
    assert choose({1: 1.0, 2: 1.05}) == 1  # a second guest barely helps
    assert choose({1: 1.0, 2: 1.6, 3: 2.4, 4: 2.5}) == 3


def test_measured_capacity_is_the_default_jobs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from harness.runner import capacity

    monkeypatch.delenv("KLP_HARNESS_JOBS", raising=False)
    monkeypatch.setattr(capacity, "cache_file", lambda: tmp_path / "capacity.json")
    assert capacity.cached_jobs() is None
    assert capacity.record({1: 1.0, 2: 1.9, 3: 1.95}) == 2
    assert capacity.cached_jobs() == 2
    assert default_jobs() == 2


# ---- every scenario x profile, streamed (guests stood in for: tests/runner/fakes.py) ------


def test_every_scenario_on_every_profile_has_an_outcome_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.runner.suite import exit_code, run_suite
    from harness.scenario.loader import load_scenarios
    from tests.runner.fakes import (
        ONLY_612,
        PASSING,
        PROFILES,
        REFUSED,
        no_guests,
        statuses,
        write_scenarios,
    )

    plan = no_guests(monkeypatch)
    plan.statuses["differs"] = "difference"
    paths = write_scenarios(
        tmp_path / "s", passes=PASSING, refused=REFUSED, only612=ONLY_612, differs=PASSING
    )
    reported: list[tuple[str, str, str]] = []
    outcomes = run_suite(
        load_scenarios(paths),
        [PROFILES["debian-6.1"], PROFILES["debian-6.12"]],
        tmp_path / "results",
        echo=lambda _text: None,
        on_outcome=lambda o, _path: reported.append((o.scenario, o.profile, o.status)),
    )
    assert statuses(outcomes) == [
        ("passes", "debian-6.1", "pass"),
        ("refused", "debian-6.1", "refused"),
        ("only612", "debian-6.1", "skipped"),
        ("differs", "debian-6.1", "difference"),
        ("passes", "debian-6.12", "pass"),
        ("refused", "debian-6.12", "refused"),
        ("only612", "debian-6.12", "pass"),
        ("differs", "debian-6.12", "difference"),
    ]
    assert sorted(reported) == sorted(statuses(outcomes))  # each reported once
    refused = outcomes[1].refused or ""
    assert refused.startswith("step 2: `load lp` would wait for ever"), refused
    assert outcomes[2].skipped == "not for debian-6.1 (kernels = debian-6.12)"
    assert plan.ran.count("refused") == 0 and plan.ran.count("only612") == 1
    assert exit_code(outcomes) == 1  # refused and skipped fail nothing; the difference does


def test_exitfirst_reports_the_rest_as_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.runner.suite import EXITFIRST, run_suite
    from harness.scenario.loader import load_scenarios
    from tests.runner.fakes import PASSING, PROFILES, no_guests, statuses, write_scenarios

    plan = no_guests(monkeypatch)
    plan.statuses["first"] = "difference"
    paths = write_scenarios(tmp_path / "s", first=PASSING, second=PASSING)
    outcomes = run_suite(
        load_scenarios(paths),
        [PROFILES["debian-6.1"], PROFILES["debian-6.12"]],
        tmp_path / "results",
        exitfirst=True,
        echo=lambda _text: None,
    )
    assert statuses(outcomes) == [
        ("first", "debian-6.1", "difference"),
        ("second", "debian-6.1", "skipped"),
        ("first", "debian-6.12", "skipped"),
        ("second", "debian-6.12", "skipped"),
    ]
    assert all(o.skipped == EXITFIRST for o in outcomes[1:])
    assert plan.ran == ["first"]


def test_a_result_is_reported_before_the_next_scenario_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second scenario cannot end until the first one's outcome has been handed to
    the caller: if results came only at the end, it would never be."""
    import threading

    from harness.outcome.scenario import ScenarioOutcome
    from harness.runner.suite import run_suite
    from harness.scenario.loader import load_scenarios
    from tests.runner.fakes import PASSING, PROFILES, no_guests, write_scenarios

    plan = no_guests(monkeypatch)
    first_reported = threading.Event()
    plan.gates["second"] = first_reported
    main = threading.current_thread()
    seen: list[str] = []

    def report(outcome: ScenarioOutcome, _path: object) -> None:
        assert threading.current_thread() is main  # the thread that owns the output
        seen.append(outcome.scenario)
        first_reported.set()

    paths = write_scenarios(tmp_path / "s", first=PASSING, second=PASSING)
    outcomes = run_suite(
        load_scenarios(paths), [PROFILES["debian-6.1"]], tmp_path / "r",
        echo=lambda _text: None, on_outcome=report,
    )  # fmt: skip
    assert seen == ["first", "second"]
    assert [o.status for o in outcomes] == ["pass", "pass"], [o.error for o in outcomes]


def test_a_host_failure_outweighs_a_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.runner.suite import exit_code, run_suite
    from harness.scenario.loader import load_scenarios
    from tests.runner.fakes import PASSING, PROFILES, no_guests, write_scenarios

    plan = no_guests(monkeypatch)
    plan.statuses.update(lost="host-failure", differs="difference")
    paths = write_scenarios(tmp_path / "s", differs=PASSING, lost=PASSING, passes=PASSING)
    outcomes = run_suite(
        load_scenarios(paths), [PROFILES["debian-6.1"]], tmp_path / "r", echo=lambda _t: None
    )
    assert [o.status for o in outcomes] == ["difference", "host-failure", "pass"]
    assert exit_code(outcomes) == 3
    assert exit_code(outcomes[::2]) == 1 and exit_code(outcomes[2:]) == 0


def test_a_model_variant_predicts_and_is_kept_for_a_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.model import predict
    from harness.model.variants import Variant
    from harness.runner.options import GuestOptions
    from harness.runner.prepare import prepare
    from harness.runner.suite import run_suite
    from harness.scenario.loader import load_scenario
    from tests.runner.fakes import PROFILES, no_guests

    no_guests(monkeypatch)
    seed = load_scenario(SCENARIOS / "seeds" / "004_replace_drops_function.toml")
    profile = PROFILES["debian-6.1"]
    [item] = prepare([seed], profile, lambda _t: None, Variant.NO_NOPS)
    assert item.predicted != predict(seed, "6.1")  # the variant's, not the model's
    options = GuestOptions(append=("quiet",), memory_mib=640)
    [outcome] = run_suite(
        [seed], [profile], tmp_path, echo=lambda _t: None, options=options,
        variant=Variant.NO_NOPS, fast_guest=True,
    )  # fmt: skip
    assert outcome.run_options == [
        "--append",
        "quiet",
        "--memory",
        "640",
        "--model-variant",
        "no-nops",
        "--fast-guest",
    ]


def test_guest_options_change_the_config() -> None:
    from harness.guest.config import GuestConfig
    from harness.runner.options import GuestOptions

    config = GuestConfig(Path("bzImage"), Path("initrd"), append=("a=1",), cpus=2)
    assert GuestOptions().apply(config) == config
    changed = GuestOptions(append=("b=2",), memory_mib=1024, cpus=1).apply(config)
    assert (changed.append, changed.memory_mib, changed.cpus) == (("a=1", "b=2"), 1024, 2)
    assert GuestOptions(cpus=4).apply(config).cpus == 4  # at least N; a scenario may ask more
    opts = GuestOptions(qemu_opts=("-device virtio-rng-pci",))
    assert opts.apply(config).qemu_opts == ("-device", "virtio-rng-pci")
    assert opts.argv() == ["--qemu-opt=-device virtio-rng-pci"]


def test_guest_kinds_have_snapshots_of_their_own() -> None:
    """Another memory size or QEMU option is another kind of guest: its snapshot must not
    replace the default one (each would boot again every time the other ran)."""
    from harness.guest.config import GuestConfig
    from harness.guest.snapshot import variant_name
    from harness.runner.options import GuestOptions

    config = GuestConfig(Path("bzImage"), Path("initrd"), name="debian-6.1")
    names = {
        variant_name(options.apply(config))
        for options in (
            GuestOptions(),
            GuestOptions(memory_mib=1024),
            GuestOptions(qemu_opts=("-device virtio-rng-pci",)),
            GuestOptions(append=("quiet",)),
        )
    }
    assert len(names) == 4 and "debian-6.1" in names
