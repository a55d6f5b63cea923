"""Findings as syzkaller keeps them: a signature from the first differing step's kind,
fields and kernel report; a corpus folder per signature whose shortest scenario is
kept; a known signature met again is counted, not shrunk again; a run over several
sides spreads its budget and merges what they find."""

from __future__ import annotations

import json
from pathlib import Path

from harness.fuzz.campaign import SUMMARY, model_sides, run_campaign
from harness.fuzz.config import SearchConfig, WorkerConfig
from harness.fuzz.findings import (
    FINDING,
    REPORT,
    SCENARIO,
    Corpus,
    Signature,
    hung_in,
    signature_of,
)
from harness.fuzz.histories import History, predict_history
from harness.fuzz.judge import ModelJudge, Verdict
from harness.fuzz.search import Stats, search
from harness.fuzz.worlds import parse_many, world
from harness.model.variants import Variant
from harness.outcome.compare import FieldDiff, Mismatch
from harness.outcome.record import StepRecord
from harness.outcome.scenario import ScenarioOutcome

WARNING = "warning at kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func"


def outcome(step: str, fields: tuple[str, ...], report: str = "") -> ScenarioOutcome:
    observed = [StepRecord(0, "load p_cmd"), StepRecord(1, step, report=report)]
    diffs = tuple(FieldDiff(f, []) for f in fields)
    return ScenarioOutcome("x", "debian-6.1", [], observed, Mismatch(1, step, diffs))


def test_a_signature_is_the_step_kind_the_fields_and_the_report() -> None:
    a = signature_of(outcome("call vmlinux:cmdline_proc_show", ("report",), WARNING), "model")
    b = signature_of(outcome("call vmlinux:meminfo_proc_show", ("report",), WARNING), "model")
    assert a == b == Signature("model", "call", ("report",), WARNING)
    assert a.title == f"the model differs at `call` (report), kernel report: {WARNING}"
    c = signature_of(outcome("load p_one", ("sysfs", "errno")), "no-nops")
    assert c.fields == ("errno", "sysfs") and c.id != a.id
    assert c.title == "variant no-nops refuted at `load` (errno, sysfs)"
    crash = ScenarioOutcome("x", "debian-6.1", [], error="guest crashed at 12.5 s, pid 141")
    assert signature_of(crash, "model").report == "guest crashed at N.N s, pid N"
    oops = "oops: BUG: unable to handle page fault for address: ffffffffc03ff085 (RIP 0x1f)"
    again = oops.replace("ffffffffc03ff085", "ffffffffc0400119")
    one, other = (ScenarioOutcome("x", "debian-6.1", [], error=e) for e in (oops, again))
    assert signature_of(one, "model") == signature_of(other, "model")
    assert signature_of(one, "model").report.endswith("for address: N (RIP N)")


def test_the_corpus_keeps_the_shortest_scenario_and_counts_the_rest(tmp_path: Path) -> None:
    corpus = Corpus(tmp_path)
    signature = Signature("model", "load", ("log",), "")
    first = corpus.add(signature, "debian-6.1", "long", "report 1", 5, 0)
    assert first.new and first.kept
    again = corpus.add(signature, "debian-7.3", "longer", "report 2", 7, 3)
    assert not again.new and not again.kept
    shorter = corpus.add(signature, "debian-7.3", "short", "report 3", 2, 4)
    assert shorter.kept and (shorter.folder / SCENARIO).read_text() == "short"
    assert (shorter.folder / REPORT).read_text() == "report 3"
    assert corpus.seen_again(signature.id, "debian-6.1") is not None
    entry = json.loads((shorter.folder / FINDING).read_text())
    assert entry["seen"] == 4 and entry["shrunk"] == 3 and entry["length"] == 2
    assert entry["profiles"] == {"debian-6.1": 2, "debian-7.3": 2}
    assert Corpus(tmp_path).known() == {signature.id}  # read back from disk


def test_a_known_signature_is_counted_and_not_shrunk_again() -> None:
    config = SearchConfig(seed=1, seconds=20, shrink_seconds=10, variant="static-patched-cleared")
    found = search(config, ModelJudge())
    assert found is not None
    known = {signature_of(found.verdict.outcome, "static-patched-cleared").id}
    known.add(signature_of(found.first_verdict.outcome, "static-patched-cleared").id)
    stats = Stats()
    again = search(config, ModelJudge(), stats, lambda: stats.histories >= 60, known=known)
    assert stats.duplicates > 0
    if again is not None:  # another way to refute it: a new signature
        assert signature_of(again.verdict.outcome, "static-patched-cleared").id not in known


def test_a_run_over_sides_spreads_the_budget_and_merges_findings(tmp_path: Path) -> None:
    # a shrink budget well inside a side's share: a busy host's slower shrinking then
    # cannot take the second side's share as well
    search_config = SearchConfig(
        seed=0, seconds=6, shrink_seconds=1, variant="static-patched-cleared", keep_going=True
    )
    config = WorkerConfig(search_config, tmp_path)
    lines: list[str] = []
    campaign = run_campaign(config, model_sides(["6.1", "6.12"]), 1, lines.append)
    assert [s.side for s in campaign.summaries] == ["model-6.1", "model-6.12"]
    shares = [float(line.split()[-4][:-1]) for line in lines if line.endswith("of the budget")]
    # half each, and the second side gets what the first left (whatever it took)
    left = search_config.seconds - campaign.summaries[0].seconds
    assert shares == [3.0, float(f"{left:.0f}")]
    corpus = Corpus(tmp_path)
    sides = {side for entry in corpus.entries.values() for side in entry.profiles}
    assert sides == {"model-6.1", "model-6.12"} and len(corpus.entries) <= len(campaign.found)
    assert all(f["folder"].startswith(str(tmp_path)) for f in campaign.found)
    summary = json.loads((tmp_path / SUMMARY).read_text())
    assert [s["side"] for s in summary["sides"]] == ["model-6.1", "model-6.12"]
    text = "\n".join(campaign.lines())
    assert "in all:" in text and f"findings: {len(corpus.entries)} new" in text


def test_a_model_only_judge_tells_variants_apart() -> None:
    """Histories that refute a variant on the kernel are told apart model-only, and a
    variant already told apart is checked on one history in eight after that."""
    judge = ModelJudge("6.1", [Variant.STATIC_PATCHED_CLEARED, Variant.NO_NOPS])
    one = predict_history(History.of(parse_many(world(["p_cum"]), ["load p_cum"])))
    verdict = judge.judge(one)
    assert verdict.told_apart == ("static-patched-cleared",)
    assert verdict.checked == ("static-patched-cleared", "no-nops")
    again = [judge.judge(one).checked for _ in range(8)]
    assert sum("static-patched-cleared" in c for c in again) == 1
    assert all("no-nops" in c for c in again)


def test_a_crash_keeps_the_step_it_ended() -> None:
    """A step that crashes the guest is not among the observed (they are the steps
    that finished): the history that shows the crash goes through it.  A finding once
    lost it (dummy's reload, which oopsed, cut from the scenario kept)."""
    names = world(["p_cum", "p_dummy"])
    history = History.of(parse_many(names, ["load p_dummy", "load dummy", "unload dummy"]))
    ran = [StepRecord(0, "load p_dummy")]
    crash = ScenarioOutcome("x", "debian-6.1", [], ran, error="guest crashed: oops")
    assert Verdict(crash, 1).shown_by(history).steps == history.steps[:2]
    differs = ScenarioOutcome("x", "debian-6.1", [], ran, Mismatch(0, "load p_dummy", ()))
    assert Verdict(differs, 1).shown_by(history).steps == history.steps[:1]
    hurt = ScenarioOutcome("x", "debian-6.1", [], ran * 3, error="the kernel raised taint W")
    assert Verdict(hurt, 3).shown_by(history).steps == history.steps


HUNG = """kernel report: hung-task: INFO: task klp-bpf:{pid} blocked for more than 120 seconds.
[  244.660100] task:klp-bpf         state:D stack:0     pid:{pid}   ppid:158    flags:0x00004002
[  244.660849] Call Trace:
[  244.660964]  <TASK>
[  244.661096]  __schedule+0x34d/0xa00
[  244.663581]  schedule+0x5a/0xd0
[  244.663836]  schedule_timeout+0x11a/0x150
[  244.664032]  __wait_for_common+0x94/0x1e0
[  244.664132]  ? usleep_range_state+0x90/0x90
[  244.664214]  __wait_rcu_gp+0x12b/0x140
[  244.664263]  synchronize_rcu_tasks+0x5e/0xd0
[  244.664310]  ? call_rcu_tasks_generic+0x200/0x200
[  244.664581]  {where}+0xcc/0x1b0
[  244.664748]  unregister_ftrace_function+0x45/0x150
"""


def test_a_hung_task_is_named_by_what_it_waits_in() -> None:
    """Two hangs of one tool are two findings when they wait in different places
    (a BPF detach in ftrace_shutdown, an attach in register_ftrace_direct_multi: one
    signature before), and one when only the pid differs."""

    def signature(where: str, pid: int) -> Signature:
        error = HUNG.format(pid=pid, where=where)
        return signature_of(ScenarioOutcome("x", "debian-6.1", [], error=error), "model")

    shutdown = signature("ftrace_shutdown.part.0", 159)
    assert shutdown.report.endswith("blocked for more than N seconds. hung in ftrace_shutdown")
    assert signature("ftrace_shutdown.part.0", 157) == shutdown
    assert signature("register_ftrace_direct_multi", 157) != shutdown
    assert hung_in("guest crashed: oops: BUG: unable to handle page fault") == ""
