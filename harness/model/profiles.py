"""Kernel-version differences the model knows about, in one place.

The model is written against Linux 6.1 (Debian 6.1.192); 6.12 (6.12.117) and 7.3
(7.3.4) were read against it, and docs/model-notes.md lists each difference with the
source line it comes from.  Each later difference that a scenario can observe is one
field of `ModelProfile`, set in the profile of the first series that has it, with the
upstream version that introduced it.  Differences that exist but that no scenario
step can observe are listed in `UNOBSERVABLE` so that a reader knows they were
considered.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from harness.errors import UsageError


@dataclass(frozen=True)
class ModelProfile:
    series: str
    # /sys/kernel/livepatch/<patch>/replace (0444): "livepatch: Add "replace" sysfs
    # attribute", v6.11 (Documentation/ABI/testing/sysfs-kernel-livepatch says 6.11.0).
    sysfs_replace: bool = False
    # /sys/kernel/livepatch/<patch>/stack_order (0444): "livepatch: Add stack_order sysfs
    # attribute", v6.14 (ABI doc: 6.14.0) -- not in 6.12 (Debian's 6.12.117 source);
    # the patch's 1-based position in klp_patches (7.3 core.c:460-479).
    sysfs_stack_order: bool = False
    # sysctl kernel.ftrace_enabled=0 is refused with EOPNOTSUPP and ftrace stays on
    # (7.3 kernel/trace/ftrace.c:9441-9447, "deprecated and no longer disables
    # ftrace"); up to 7.2 it turns ftrace off unless a permanent ops (a livepatch
    # handler) is registered (EBUSY).  Not in Debian's 7.2.13 source, in 7.3.4's.
    ftrace_off_refused: bool = False
    # register_kprobe() returns 0 when arming the kprobe fails (e.g. EBUSY: a kprobe
    # with a post_handler on a function a livepatch holds): __register_kprobe() lost
    # the `goto out` with arm_kprobe()'s error in "kprobes: Adopt guard() and
    # scoped_guard()" (posted 2024-11-26, <173262939134.8323.5749305699780043892.stgit@
    # devnote2>); 7.3 kernel/kprobes.c:1709-1720 returns 0, 6.12 :1686-1692 the error.
    kprobe_arm_error_lost: bool = False
    # Kernel code is preempted involuntarily by default: Debian's 7.3 config has
    # CONFIG_PREEMPT_LAZY=y, so preempt_dynamic_init() picks "lazy" (7.3
    # kernel/sched/core.c:8099-8108); its 6.1 and 6.12 configs have
    # CONFIG_PREEMPT_VOLUNTARY=y: "voluntary" (6.1 core.c:8676-8682, 6.12 :7580-7586),
    # where a kernel thread gives up the CPU only when it sleeps or in cond_resched().
    # A build choice of Debian's, not an upstream version (harness/model/kernel/tasks.py).
    preempts_kernel_code: bool = False
    # A running task switches itself in cond_resched() while a transition is pending:
    # klp_start_transition() enables klp_cond_resched() (6.12 transition.c:563, core.c
    # :7539-7550), which checks current's stack ("livepatch,sched: Add livepatch task
    # switching to cond_resched()", v6.4).  6.1 has no such hook; 7.3 replaced it with
    # klp_sched_try_switch() in __schedule() for TASK_FREEZABLE sleepers only (7.3
    # core.c:7135, livepatch_sched.h:14-19), which a preempted thread is not.  Seen
    # only with 2 CPUs (a thread running on the other CPU at every attempt,
    # harness/model/kernel/tasks.py).  Not in SINCE: it came in v6.4 and went before 7.3.
    klp_cond_resched: bool = False
    # The going hook clears a module object's klp relocations (klp_clear_object_relocs,
    # 6.12 core.c:1227, 7.3 :1262; x86 clear_relocate_add, 6.12
    # arch/x86/kernel/module.c:211-218), so the module can come again: "livepatch,x86:
    # Clear relocation targets on a module removal", v6.3.  6.1's going hook does not
    # (core.c:1159-1185), and x86 refuses the nonzero slot at the next coming with
    # "Skipping invalid relocation target" (6.1 module.c:210-213); 6.12 says "Invalid
    # relocation target" (:150-152).  harness/model/kernel/relocs.py.
    klp_relocs_cleared: bool = False
    # x86's relocation errors name the relocation section's index and the entry
    # (7.3 arch/x86/kernel/module.c:151-153, "sec %u, idx %u, type %d, loc %lx"); 6.12
    # prints "type %d, loc %p" (:150).  Not in SINCE: the version that brought it was
    # not read (Debian's 7.2.13 source has no arch/ tree here).
    reloc_error_names_section: bool = False
    # The ORC unwinder knows where a BPF trampoline keeps a valid frame pointer
    # (orc_bpf_find(), 7.3 arch/x86/kernel/unwind_orc.c:185-188, :253): a task asleep
    # under an fexit trampoline has a reliable stack.  6.1 and 6.12 fall back to the
    # frame pointer and mark the unwind unreliable (unwind_orc.c:451-457, :497-503).
    # Not in SINCE: the release that brought it was not read (harness/model/kernel/bpf.py).
    bpf_frames_reliable: bool = False
    # A known bug of 6.1.192's own: its stable backport of "ftrace: bpf: Fix IPMODIFY +
    # DIRECT in modify_ftrace_direct()" has ftrace.c's half (6.1 ftrace.c:5813 returns
    # -EAGAIN on the modify path) but not trampoline.c's, so bpf_trampoline_update()
    # clears tr->fops->func after that -EAGAIN while the ops stays registered (6.1
    # kernel/bpf/trampoline.c:494-507): the next call WARNs at ftrace.c:7660 and ftrace
    # is killed (harness/model/kernel/bpf.py).  Not in SINCE: no upstream version has it.
    bpf_modify_clears_ops_func: bool = False
    # Every BPF trampoline shares one static ftrace_ops, direct_ops
    # (CONFIG_HAVE_SINGLE_FTRACE_DIRECT_OPS, which x86_64 selects: 7.3
    # arch/x86/Kconfig:342, kernel/bpf/trampoline.c:217-233): a function's last program
    # goes by update_ftrace_direct_del() (ftrace.c:6536-6620), and unregistering a core
    # kernel ops is no FTRACE_OPS_FL_DYNAMIC shutdown, so no synchronize_rcu_tasks()
    # (ftrace.c:3254-3272).  6.1 and 6.12 allocate an ops per trampoline (6.1
    # trampoline.c:153, 6.12 :156) and the last program's removal unregisters it
    # (unregister_fentry, 6.1 :440-441 -> :195-201, 6.12 :419-420 -> :178-184), a
    # dynamic ops whose ftrace_shutdown() waits for every task to schedule voluntarily
    # (harness/model/kernel/bpf.py `detach`).  Not in SINCE: the release that brought
    # it was not read.
    bpf_direct_ops_shared: bool = False
    # The direct_functions hash a new direct call grows is freed after an RCU Tasks
    # grace period by call_rcu_tasks() (6.12 kernel/trace/ftrace.c:6061-6062, 7.3
    # :6180-6181); 6.1 waits for it in register_ftrace_direct_multi()
    # (synchronize_rcu_tasks(), :5743-5746), and the first direct call while none is
    # registered always grows it (ftrace_add_rec_direct, :2487-2506): a BPF attach
    # then waits for every task to schedule voluntarily (harness/model/kernel/bpf.py).
    # Not in SINCE: the release that brought it was not read.
    direct_hash_freed_async: bool = False
    # A known bug in every series read (6.1.192, 6.12.118, 7.3.4), finding 5 of
    # docs/findings.md: a kprobe with a post_handler that joins an aggregate probe
    # armed on kprobe_ftrace_ops is not armed again (register_aggr_kprobe) but gives
    # the aggregate aggr_post_handler (add_new_kprobe, 6.1 kprobes.c:1264-1265, 6.12
    # :1273-1274, 7.3 :1340-1341), which __unregister_kprobe_top() keeps for ftrace
    # kprobes (6.1 :1794, 6.12 :1804, 7.3 :1859); the aggregate's last disarm then picks
    # kprobe_ipmodify_ops by that post_handler (disarm_kprobe_ftrace, 6.1 :1133, 6.12
    # :1137, 7.3 :1210), whose filter lacks the address: ftrace_set_filter_ip() fails
    # with -ENOENT and WARN_ONCE (6.1 :1126, 6.12 :1130, 7.3 :1203).
    kprobe_disarm_wrong_ops: bool = True
    # A known bug in every series read, finding 6 of docs/findings.md: when a patch's
    # coming fails after its object's klp relocations were written (a pre_patch
    # callback's error, klp_patch_object's), klp_module_coming()'s `err:` cleans up
    # only the patches before it (klp_cleanup_module_patches_limited(mod, patch): 6.12
    # core.c:1273-1278 -> :1300-1309 -> :1205-1230, 7.3 :1308-1313 -> :1335-1344 ->
    # :1240-1265), so the failing patch's slots keep the module's old addresses and its
    # next coming fails in x86's apply_relocate_add (7.3 arch/x86/kernel/module.c:150-154):
    # ENOEXEC while the patch stays loaded (tests/scenarios/bugs/07).  6.1 clears no
    # slot at any going (klp_relocs_cleared), so a fix there needs both.
    failed_coming_keeps_relocs: bool = True


PROFILES: dict[str, ModelProfile] = {
    "6.1": ModelProfile("6.1", bpf_modify_clears_ops_func=True),
    "6.12": ModelProfile(
        "6.12",
        sysfs_replace=True,
        klp_relocs_cleared=True,
        klp_cond_resched=True,
        direct_hash_freed_async=True,
    ),
    "7.3": ModelProfile(
        "7.3",
        sysfs_replace=True,
        sysfs_stack_order=True,
        ftrace_off_refused=True,
        kprobe_arm_error_lost=True,
        preempts_kernel_code=True,
        klp_relocs_cleared=True,
        reloc_error_names_section=True,
        bpf_frames_reliable=True,
        bpf_direct_ops_shared=True,
        direct_hash_freed_async=True,
    ),
}

DEFAULT_SERIES = "6.1"

UNOBSERVABLE = {
    # "livepatch,sched: Add livepatch task switching to cond_resched()", v6.4, on the
    # one-CPU guests: our blockers sleep in msleep(); a spinner thread is off the CPU
    # (so stack-checked) whenever a retry runs, and the hook checks the same stack.
    # Observable with 2 CPUs: `klp_cond_resched` above.
    "cond_resched switching on one CPU": "v6.4",
    # klp_check_stack() uses per-CPU entry buffers and switches `current` without
    # task_call_func() (v6.3/v6.4 refactors): same decisions.
    "stack check refactors": "v6.3",
    # KLP_UNDEFINED renamed KLP_TRANSITION_IDLE (v6.7): a name only.
    "KLP_TRANSITION_* names": "v6.7",
    # Tasks switch in __schedule() (sched/core.c:7135, TASK_FREEZABLE sleepers only,
    # livepatch_sched.h:14-19) instead of cond_resched() (7.3 transition.c:30-38,
    # 357-381): our blockers sleep in msleep() (uninterruptible, not freezable) and
    # have the patched function on their stack anyway; the others switch sooner.
    "switching in schedule()": "after 6.12 (in 7.2.13)",
    # klp_check_patch() (7.3 core.c:1092-1109): a func without old_name is refused in
    # klp_enable_patch() before anything else; generated patches always name theirs.
    "old_name checked first": "v7.3",
    # "symbol %s at rela sec %u idx %d is not marked as a livepatch symbol" (7.3
    # core.c:226): generated klp relocations always name SHN_LIVEPATCH symbols
    # (harness/modules/klprela.py checks it after the build).
    "klp relocation message": "after 6.12 (in 7.2.13)",
}


# When each difference appeared upstream; the PROFILES above agree with it (tested).
SINCE = {
    "klp_relocs_cleared": (6, 3),
    "sysfs_replace": (6, 11),
    "sysfs_stack_order": (6, 14),
    "ftrace_off_refused": (7, 3),
    "kprobe_arm_error_lost": (6, 14),
}
# what predict() does
MODELLED = (
    "sysfs_replace",
    "sysfs_stack_order",
    "ftrace_off_refused",
    "kprobe_arm_error_lost",
    "klp_relocs_cleared",
)


def _version(series: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", series)
    return (int(match.group(1)), int(match.group(2))) if match else None


def profile_for(series: str) -> ModelProfile:
    """The model profile of a kernel series: a known one ("6.1", "6.12"), or for any
    later "X.Y" (a user's own tree) the rules of `model_series(X.Y)` with every
    difference set by the version that introduced it (6.11 has sysfs `replace`).
    Older series are refused: the model is a reading of 6.1, and older kernels differ
    in what scenarios observe (klp_state arrived in 5.5, for one)."""
    if series in PROFILES:
        return PROFILES[series]
    version = _version(series)
    if version is None or version < _OLDEST:
        raise UsageError(
            f"the model knows no kernel series {series!r} (known: {', '.join(PROFILES)}, "
            "and later series by the newest of them not newer)"
        )
    base = PROFILES[model_series(series)]
    since = {name: version >= first for name, first in SINCE.items()}
    return dataclasses.replace(base, series=f"{version[0]}.{version[1]}", **since)


def _known() -> list[str]:
    return sorted(PROFILES, key=lambda s: _version(s) or (0, 0))


_OLDEST = _version(_known()[0]) or (0, 0)


def model_series(version: str) -> str:
    """The known series whose rules apply to a kernel `version` ("6.9.0", "7.0"): the
    newest not newer than it (the oldest for anything else; profile_for refuses it)."""
    wanted = _version(version) or (0, 0)
    older = [s for s in _known() if (_version(s) or (0, 0)) <= wanted]
    return older[-1] if older else _known()[0]


def describe_choice(version: str) -> str:
    """One line saying which rules the model applies to a kernel `version` and what
    it cannot predict there (said when a user's tree is selected)."""
    series = model_series(version)
    wanted = _version(version) or (0, 0)
    line = f"kernel {version}: the model applies its {series} rules"
    extra = [
        f"{name} (v{first[0]}.{first[1]})"
        for name, first in SINCE.items()
        if wanted >= first and not getattr(PROFILES[series], name) and name in MODELLED
    ]
    unmodelled = [
        f"{name} (v{first[0]}.{first[1]})"
        for name, first in SINCE.items()
        if wanted >= first and name not in MODELLED
    ]
    if extra:
        line += f", with {', '.join(extra)}"
    if unmodelled:
        line += f"; not modelled yet, so steps will differ: {', '.join(unmodelled)}"
    return line
