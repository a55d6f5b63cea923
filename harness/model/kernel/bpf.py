"""BPF tracing programs beside livepatch (kernel/bpf/trampoline.c, kernel/trace/ftrace.c)
and the frames their trampolines leave on a sleeping task's stack.

A fentry/fexit program runs from a BPF trampoline that ftrace calls directly from the
function's call site (register_fentry -> register_ftrace_direct).  Livepatch's ops
there is IPMODIFY; ftrace lets a direct ops share the site with it through
ops_func(FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF): the trampoline is rebuilt to
call whatever the IPMODIFY ops chose (bpf_tramp_ftrace_ops_func(), 6.1
trampoline.c:36, 6.12 :35, 7.3 :98).  So attaching succeeds on a livepatched
function and the livepatch's code still runs: the record's implementations do not
change.  (Fixed in every profile: "ftrace: Fix BPF fexit with livepatch" and
"ftrace: bpf: Fix IPMODIFY + DIRECT in modify_ftrace_direct()", v6.18, both in
6.1.192, 6.12.117 and 7.3.4.)

**6.1.192's backport of the second fix is incomplete.** It brought ftrace.c's half
(__modify_ftrace_direct_multi() now runs the IPMODIFY check, 6.1 ftrace.c:5813, which
returns -EAGAIN when the trampoline must be rebuilt) but not trampoline.c's:
bpf_trampoline_update() still clears tr->fops->func after any -EAGAIN (6.1
trampoline.c:499-506), also on that modify path, where the ops stays registered.
The next call of the function finds an ops without func: FTRACE_WARN_ON in
__ftrace_ops_list_func() (6.1 ftrace.c:7660), which kills ftrace for good.  Seen on
the 6.1 guest: livepatch-sample loaded, fentry then fexit attached to
cmdline_proc_show, `cat /proc/cmdline` -> "WARNING: CPU: 0 PID: 155 at
kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func".  The model predicts that
report at the first step that calls the function (`report_after`; the runner reads
every observed function after each step) and no step after it: ftrace is dead.

**A trampoline frame on a sleeping task's stack.**  An fexit trampoline calls the
function itself (BPF_TRAMP_F_CALL_ORIG), so a task that entered the function through
it sleeps with the trampoline's frame below the function's.  BPF code has no ORC
data: the ORC unwinder falls back to the frame pointer and marks the unwind
unreliable (6.1 arch/x86/kernel/unwind_orc.c:451-457, 6.12 :497-503), so
klp_check_stack() fails with -EINVAL, "has an unreliable stack" (6.1
transition.c:248/319, 6.12 :273/348, 7.3 :264/339), at every attempt, whatever the patch
changes.  7.3 knows the frame-pointer region of BPF trampolines (orc_bpf_find(),
unwind_orc.c:185-188, :253; "x86/unwind/orc: ... bpf_has_frame_pointer()"): the stack
is reliable (`ModelProfile.bpf_frames_reliable`).  A fentry-only trampoline returns
before the function runs and leaves no frame.

The sleepers (`[[processes]] run = "sleep"`, busybox `sleep` in clock_nanosleep())
have these vmlinux functions on their stack while asleep (seen in /proc/<pid>/stack
on the three guests; do_nanosleep() is inlined into hrtimer_nanosleep()): a trampoline
frame is there when an fexit program on one of them was attached before the sleeper
went to sleep.  They are user tasks: klp_send_signals() wakes them at the 16th failed
attempt (a fake signal, set_notify_signal(): 6.1 transition.c:370, 6.12 :437, 7.3
:416) and they switch on their way back to user space, a time the model does not
count: it refuses steps that could reach it (`signal_refusal`).
"""

from __future__ import annotations

from harness.model.kernel.klp import SIGNALS_TIMEOUT, FuncKey
from harness.model.kernel.system import DIRECT_HASH_GROWN, FTRACE_SHUTDOWN, Kernel
from harness.scenario.step_types import Spawn, Step, Wait
from harness.scenario.types import VMLINUX, BpfProgram

SLEEP_PATH = ("__x64_sys_clock_nanosleep", "common_nsleep", "hrtimer_nanosleep")
SLEEP_KEY: FuncKey = (VMLINUX, "hrtimer_nanosleep")  # where a sleeper sleeps


def attach(k: Kernel, prog: BpfProgram) -> int:
    """The program's trampoline is registered as the function's direct call.  On 6.1
    the first direct call while none is registered grows the direct_functions hash
    and waits in synchronize_rcu_tasks() before freeing the old one
    (ftrace_add_rec_direct, 6.1 kernel/trace/ftrace.c:2487-2506;
    register_ftrace_direct_multi :5743-5746); 6.12 and 7.3 free it by call_rcu_tasks()
    (6.12 :6061-6062, 7.3 :6180-6181), profiles.py `direct_hash_freed_async`."""
    if not k.bpf and not k.profile.direct_hash_freed_async:
        k.rcu_tasks_waits.append(DIRECT_HASH_GROWN)
    key: FuncKey = (VMLINUX, prog.func)
    if breaks_ops(k, prog):
        k.broken_ops.add(key)
    if key in k.klp_ops and _calls_function(k, prog):
        k.bpf_shares_ipmodify.add(key)  # ..._SHARE_IPMODIFY_SELF's -EAGAIN set the flag
    k.bpf.append(prog)
    return 0


def detach(k: Kernel, name: str) -> int:
    """The link is released; a trampoline image a sleeper still returns into is freed
    only after it left (bpf_tramp_image_put), so a sleeper's stack keeps its frame.
    The function's last program takes its trampoline's ftrace ops away: on 6.1 and
    6.12 an ops of its own, whose ftrace_shutdown() waits in synchronize_rcu_tasks()
    like a func stack's (profiles.py `bpf_direct_ops_shared`).  6.1 waits in the
    unlink itself; 6.12 releases a pinned link from a work item (bpf_any_put ->
    bpf_link_put, 6.12 kernel/bpf/inode.c:63, syscall.c:3047-3053), so the unlink
    returns and the work waits holding ftrace_lock: the next module load hung in
    ftrace_process_locs()."""
    gone = [p for p in k.bpf if p.name == name]
    k.bpf[:] = [p for p in k.bpf if p.name != name]
    last = gone and all(p.func != gone[0].func for p in k.bpf)
    if last:  # the trampoline goes with its last link (bpf_trampoline_put), its flags too
        k.bpf_shares_ipmodify.discard((VMLINUX, gone[0].func))
    if last and not k.profile.bpf_direct_ops_shared:
        k.rcu_tasks_waits.append(FTRACE_SHUTDOWN)  # unregister_ftrace_function(tr->fops)
    return 0


# What 6.1.192 prints when a call reaches an ftrace ops without func (see above).
NULL_FUNC_WARNING = {"6.1": "warning at kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func"}


def breaks_ops(k: Kernel, prog: BpfProgram) -> bool:
    """Whether attaching `prog` leaves its function's BPF ops registered without a
    func (6.1.192's partial backport, see the module docstring): a livepatch holds
    the function, a program is there already (the modify path), fexit is among them
    (the rebuilt trampoline must call the function), and the trampoline does not know
    yet that it shares the site, so ops_func(..._SHARE_IPMODIFY_SELF) returns -EAGAIN
    (6.1 trampoline.c:52-58).  It knows when the livepatch came after its first
    program (..._SHARE_IPMODIFY_PEER, trampoline.c:85-86) or when an earlier fexit
    made that -EAGAIN already, on the register path, which retries cleanly: then
    BPF_TRAMP_F_ORIG_STACK is set (:470-473) and the modify path returns 0 (seen on
    6.1: fentry, then the livepatch, then fexit gives no report)."""
    if not k.profile.bpf_modify_clears_ops_func or k.profile.series not in NULL_FUNC_WARNING:
        return False
    key: FuncKey = (VMLINUX, prog.func)
    if key not in k.klp_ops or key in k.bpf_shares_ipmodify:
        return False
    modifies = any(p.func == prog.func for p in k.bpf)
    return modifies and _calls_function(k, prog)


def _calls_function(k: Kernel, prog: BpfProgram) -> bool:
    """Whether the trampoline of `prog`'s function, with `prog` added, calls the
    function itself (BPF_TRAMP_F_CALL_ORIG: an fexit program among them, 6.1
    trampoline.c:456-462)."""
    return "fexit" in {prog.prog, *(p.prog for p in k.bpf if p.func == prog.func)}


def report_after(k: Kernel, called: set[FuncKey]) -> str:
    """The kernel report of a step that called the functions `called` (its own calls
    and the runner's read of every observed function), or ""."""
    if k.broken_ops & called:
        return NULL_FUNC_WARNING[k.profile.series]
    return ""


def sleeper_unreliable(k: Kernel) -> bool:
    """Whether a task going to sleep now has an fexit trampoline frame on its stack
    that makes its stack unreliable on this profile."""
    if k.profile.bpf_frames_reliable:
        return False
    return any(p.prog == "fexit" and p.func in SLEEP_PATH for p in k.bpf)


def patches_sleep_path(k: Kernel) -> list[str]:
    """Functions on a sleeper's stack that a patch of the scenario replaces: what the
    stack check would find there is not modelled for sleepers."""
    funcs = []
    for patch in k.scenario.patches:
        for obj in patch.objects:
            if obj.name == VMLINUX:
                funcs += [f for f in obj.funcs if f in SLEEP_PATH]
    return funcs


# Retries a step may take beyond the one the runner waits for (a slow step under TCG):
# the model refuses steps that could bring the failed attempts near the signal.
RETRY_MARGIN = 3


def signal_refusal(k: Kernel, step: Step) -> str | None:
    """Why a step could reach klp_send_signals() while a sleeper's unreliable stack
    holds the transition (see the module docstring), or None."""
    if k.klp_transition_patch is None:
        return None
    if not any(t.unreliable and t.patch_state != k.klp_target_state for t in k.tasks):
        return None
    retries = (step.retries or 1) if isinstance(step, Wait) else 1
    if k.blocked_steps + retries + RETRY_MARGIN < SIGNALS_TIMEOUT:
        return None
    return (
        "a sleeper with an unreliable stack could still hold the transition at the "
        f"{SIGNALS_TIMEOUT + 1}th failed attempt, whose fake signal wakes it: it then "
        "switches on its way back to user space, at a time the model does not count"
    )


def step_refusal(k: Kernel, step: Step) -> str | None:
    """Why the model cannot follow `step` with these BPF programs and sleepers."""
    if isinstance(step, Spawn) and patches_sleep_path(k):
        group = next(g for g in k.scenario.processes if g.name == step.name)
        if group.run == "sleep":
            return (
                f"a patch replaces {', '.join(patches_sleep_path(k))}, on a sleeper's "
                "stack: the model does not follow what the stack check finds there"
            )
    return signal_refusal(k, step)
