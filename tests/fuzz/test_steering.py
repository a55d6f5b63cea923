"""Steered generation: steps are drawn from what the model's state allows, a step the
model refuses is made --nowait or ends the history, a blocked transition is offered
its reverse and force (and, near the signalling limit, nothing else), and the paths
uniform draws rarely reach are reached in the first histories of a seed."""

from __future__ import annotations

from harness.fuzz.config import SearchConfig
from harness.fuzz.histories import Prediction
from harness.fuzz.judge import ModelJudge, Verdict
from harness.fuzz.palette import ORDER
from harness.fuzz.search import Stats, search
from harness.fuzz.steering import ANY, MAX_BLOCKED_STEPS, SYSTEM, Steering
from harness.fuzz.worlds import parse_many, world
from harness.scenario.step_types import Step, format_step

EVERYTHING = world(ORDER)


def step(text: str) -> Step:
    (parsed,) = parse_many(EVERYTHING, [text])
    return parsed


def texts(steps: tuple[Step, ...]) -> list[str]:
    return [format_step(s) for s in steps]


def test_menus_follow_the_state() -> None:
    steering = Steering(world(["p_cmd", "p_one", "t_alpha", "t_beta"]), "6.1")
    assert steering.groups() == (
        "p_cmd",
        "p_one",
        "t_alpha",
        "t_beta",
        SYSTEM,
        ANY,
        "p_cmd",
        "p_one",
    )
    assert texts(steering.menu("p_one")) == [
        "load p_one", "load p_one", "load p_one pre_patch_ret=-19", "load p_one replace=1"
    ]  # fmt: skip
    assert texts(steering.menu("p_cmd"))[-1] == "load p_cmd replace=1"  # no trace: not loaded
    assert texts(steering.menu("t_alpha")) == ["load t_alpha", "load t_alpha block_transition=Y"]
    assert steering.take(step("load p_one")) == step("load p_one")
    assert texts(steering.menu("p_one")) == [
        "disable p_one", "unload p_one", "trace p_one:cmdline_proc_show",
        "set p_one pre_patch_ret -19",
    ]  # fmt: skip
    assert len(steering.menu(ANY)) > 30  # every step over the set


def test_a_wait_for_ever_becomes_nowait_and_the_transition_is_offered_its_exits() -> None:
    steering = Steering(world(["p_cmd", "p_one", "t_alpha", "t_beta"]), "6.1")
    steering.take(step("load t_alpha block_transition=Y"))
    assert steering.take(step("load p_one")) == step("load p_one --nowait")
    assert steering.steered == 1
    groups = steering.groups()
    assert groups[-3:] == ("p_one", "p_one", "t_alpha")  # again: reverse/force, release
    assert steering.refusals == ["would wait for ever"]
    assert texts(steering.menu("p_one")) == [
        "disable p_one --nowait", "force p_one", "wait p_one retries=2",
        "trace p_one:cmdline_proc_show",
    ]  # fmt: skip
    assert texts(steering.menu("t_alpha")) == ["release t_alpha", "unload t_alpha"]
    for _ in range(MAX_BLOCKED_STEPS - 2):
        assert steering.take(step("call vmlinux:cmdline_proc_show")) is not None
    assert steering.groups() == ("p_one", "p_one", "t_alpha")  # the next must end or turn it
    assert steering.take(step("call vmlinux:cmdline_proc_show")) is not None
    assert steering.take(step("call vmlinux:cmdline_proc_show")) is None  # refused: ends
    assert steering.steered == 2
    # the refused step left nothing behind: the state is that of the accepted steps
    assert steering.take(step("force p_one")) == step("force p_one")
    assert steering.model.kernel.klp_transition_patch is None


def first(seed: int, count: int, uniform: bool = False) -> tuple[list[Prediction], Stats]:
    seen: list[Prediction] = []
    stats = Stats()

    def keep(prediction: Prediction, verdict: Verdict) -> None:
        seen.append(prediction)

    config = SearchConfig(seed=seed, seconds=60, uniform=uniform)
    search(config, ModelJudge(), stats, lambda: len(seen) >= count, keep)
    return seen[:count], stats


def reaching(predictions: list[Prediction], words: str) -> int:
    """How many histories log `words` (a path of the model) at some step."""
    return sum(
        any(words in line for record in p.reference for line in record.log) for p in predictions
    )


def test_steered_histories_block_reverse_and_force_transitions_and_are_not_cut() -> None:
    """Over three seeds: how often one seed's 300 histories reach a rare path varies
    several-fold with the worlds it draws (reversing: 1 to 15 per seed)."""
    steered: list[Prediction] = []
    uniform: list[Prediction] = []
    for seed in range(3):
        predictions, stats = first(seed, 300)
        assert stats.refusals == 0
        steered += predictions
        uniform += first(seed, 300, uniform=True)[0]
    blocked = [sum(any(r.pending for r in p.reference) for p in h) for h in (steered, uniform)]
    assert blocked[0] > 2 * blocked[1]
    for words in ("forcing remaining tasks", "reversing transition"):
        assert reaching(steered, words) >= 9  # over 18 patches and 7 scenes
        assert reaching(steered, words) > reaching(uniform, words)


def test_same_seed_same_steered_histories() -> None:
    histories = [p.history for p in first(5, 40)[0]]
    assert [p.history for p in first(5, 40)[0]] == histories
    assert all(set(h.names) <= set(ORDER) for h in histories)


def test_a_traced_module_is_not_offered_for_unloading_and_a_trace_is_closed() -> None:
    steering = Steering(world(["p_one", "t_alpha", "t_beta"]), "6.1")
    steering.take(step("load p_one"))
    assert steering.take(step("trace p_one:cmdline_proc_show")) is not None
    assert "unload p_one" not in texts(steering.menu("p_one"))
    assert "untrace" in texts(steering.menu(SYSTEM))
    assert steering.take(step("unload p_one")) is None  # as the loader refuses it
    assert steering.refusals[-1] == "an unload of the traced module"
    steering.close()
    assert texts(tuple(steering.steps))[-1] == "untrace"


def test_7_3_menus_leave_ftrace_off_out_and_its_worlds_the_bound_spinner() -> None:
    on_61 = Steering(world(["p_cmd", "t_alpha", "t_beta"]), "6.1")
    on_73 = Steering(world(["p_cmd", "t_alpha", "t_beta"]), "7.3")
    assert "sysctl ftrace_enabled=0" in texts(on_61.menu(SYSTEM))
    assert not any(t.startswith("sysctl") for t in texts(on_73.menu(SYSTEM)))
    histories_73 = [p.history for p in first_on(3, 60, "7.3")]
    assert not any("t_pin" in h.names for h in histories_73)


def first_on(seed: int, count: int, series: str) -> list[Prediction]:
    seen: list[Prediction] = []

    def keep(prediction: Prediction, verdict: Verdict) -> None:
        seen.append(prediction)

    config = SearchConfig(seed=seed, seconds=60, series=series)
    search(config, ModelJudge(series), Stats(), lambda: len(seen) >= count, keep)
    return seen
