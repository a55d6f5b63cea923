"""How each kind of task switches to a transition's target state, on the harness's
guests (one CPU, `harness/guest/config.py`; two with a scenario's `cpus = 2`, last
item).  transition.py is the livepatch side
(`klp_try_switch_task`, `klp_check_stack`); this module is the task side: which
tasks the model follows, where they are when a completion attempt looks at them, and
what a scenario observes of them.

Every kind, with the kernel source that decides it (6.1 = Debian 6.1.192, 6.12 =
6.12.117, 7.3 = 7.3.4):

* **User tasks** (the runner's shell and every program it starts) switch on their
  way back to user space: exit_to_user_mode_loop() calls klp_update_patch_state()
  for a task with TIF_PATCH_PENDING (6.1 kernel/entry/common.c:173-174, 6.12 :110-111,
  7.3 :61-62); asleep they pass the stack check of the first attempt (nothing patched
  on their stack).  Not followed: switched by the time the runner acts.
* **Processes calling a system call in a loop** (`[[processes]]`, upstream's
  test-syscall) are user tasks: each syscall exit switches them, so during a
  transition they are in the target state whatever it patches, and none blocks it.
* **A fork** takes its parent's state: copy_process() calls klp_copy_process(), which
  copies patch_state and TIF_PATCH_PENDING (6.1 kernel/fork.c:2513, 6.12 :2571, 7.3
  :2499).  A kernel thread is forked by kthreadd, which sleeps outside patched code
  and switched at the first attempt: a thread started during a transition starts in
  the target state (`_forked_state`).
* **Kernel threads asleep outside patched functions, and the idle task**: the stack
  check of the first attempt (klp_try_complete_transition walks every thread, then
  idle_task(cpu); 7.3 kernel/livepatch/transition.c:450-470).
* **A blocker work parked in a function** (msleep(), uninterruptible): the stack
  check fails while that code is what the transition moves away from
  (transition.klp_check_stack).  klp_send_signals() wakes only TASK_INTERRUPTIBLE
  kthreads (7.3 transition.c:411-417), so the signals do not move it.
* **A spinner calling its function in a loop** (`Spinner(inside=False)`): the
  function is on its stack only while one call lasts.  On one CPU a completion
  attempt runs only while the spinner is off the CPU.  With voluntary preemption
  (6.1, 6.12) it leaves the CPU only in cond_resched(), outside the function: the
  first attempt switches it (as does 6.12's klp_cond_resched(), sched/core.c:7539-7541,
  which checks the same stack).  With lazy preemption (7.3) it is preempted anywhere,
  almost always outside the function; an attempt that finds it inside fails and a
  later one switches it, so what settles is the same.  Without cond_resched() on a
  voluntary kernel it never leaves the guest's only CPU: refused (`spinner_refusal`).
* **A spinner spinning inside its function** (`Spinner(inside=True)`): the function
  is on its stack at every check, whoever makes it: the retry's stack check, 6.12's
  klp_cond_resched() and 7.3's klp_sched_try_switch() in __schedule() (7.3
  sched/core.c:7135) all call klp_try_switch_task(), which checks that stack (7.3
  transition.c:284-297).  Running or preempted, it never switches: the transition
  waits until it is stopped, forced or reversed.  Without cond_resched() it is
  refused on voluntary kernels as above; on 7.3 the tick preempts it and it blocks
  the same way.
* **RCU Tasks**: removing a func stack's ftrace handler (unregister_ftrace_function
  -> ftrace_shutdown()) waits in synchronize_rcu_tasks() for every task to "either
  schedule voluntarily or enter user space" (6.1 kernel/trace/ftrace.c:3121-3127,
  6.12 :3209-3215, 7.3 :3266-3272).  A spinner is preempted, in cond_resched() or by
  the tick, never scheduling voluntarily: the write that unpatches blocks until it
  stops (seen on 6.1: the runner's `echo 0 > enabled` hung in
  synchronize_rcu_tasks()).  A spinner with `rcu_tasks_qs` calls
  cond_resched_tasks_rcu_qs(), which reports the quiescent state (rcu_tasks_qs(),
  include/linux/rcupdate.h).  The model refuses a step that waits so while a
  holdout runs (`rcu_tasks_holdouts`): one that unregisters a dynamic ops (a func
  stack's, a BPF trampoline's), on 6.1 the first BPF direct call (bpf.py), and one
  that registers or unregisters a kprobe in a function's body, whose optimizer then
  waits holding kprobe_mutex, which the next module load takes (ftrace.py; found by
  the fuzzer on 7.3: `klp-load` hung in kprobes_module_callback()).
* **A spinner bound to CPU 1 of a 2-CPU guest** (`spinner.cpu`, `Task.pinned`): it
  has that CPU to itself, so it is *running* whenever an attempt (made on CPU 0 by
  the runner's write or the retry work it queued there) looks at it, and
  klp_check_and_switch_task() refuses a task that is task_curr() and not current:
  -EBUSY, "is running" (6.1 transition.c:272/316, 6.12 :297/345, 7.3 :288/336).
  klp_send_signals() only wakes TASK_INTERRUPTIBLE kthreads (6.1 :359-364, 6.12
  :426-431, 7.3 :405-410), which a running thread is not.  What switches it:
  - 6.1: nothing.  cond_resched() is __cond_resched() (core.c:8431), without a
    livepatch hook: the transition stays pending until it is forced or the thread
    stops (the bug of "livepatch,sched: Add livepatch task switching to
    cond_resched()", v6.4: vhost workers).
  - 6.12: klp_start_transition() enables klp_cond_resched() (transition.c:563), which
    every cond_resched() then calls (core.c:7539-7550): __klp_sched_try_switch()
    runs klp_try_switch_task(current) (transition.c:366-397), the stack check of a
    thread between calls, which passes.  The transition completes, at the start's
    attempt or the retry after it (a timing the model does not count: the runner
    waits for the settled state).  A spinner inside its function fails that check.
    cond_resched_tasks_rcu_qs() calls cond_resched() (include/linux/rcupdate.h:252).
  - 7.3: cond_resched() is a no-op under lazy preemption (core.c:8065), and
    __schedule()'s klp_sched_try_switch() (core.c:7135) switches only a task going
    to sleep TASK_FREEZABLE (livepatch_sched.h:14-19); a preempted thread is
    TASK_RUNNING.  But the retry work's timer is global (workqueue.c:2634
    add_timer_global), fired by a CPU that is awake, often the spinner's; the work
    is then queued on that CPU (:2375), its kworker preempts the spinner, and the
    attempt checks the spinner's stack and switches it.  When that happens is
    timing: seen completing after 3, 4, 10, 11 and 12 retries.  Refused
    (`pinned_refusal`).
  On 6.1 the retry's timer is the queueing CPU's (workqueue.c:1679 add_timer): the
  retries stay on CPU 0.  Assumed, not proven: the thread is off CPU 1 only while
  a per-CPU kworker of that CPU runs (it yields in cond_resched(), microseconds);
  an attempt falling into that window would check its stack and switch it.
  The idle tasks: idle_task(1) is not running (the spinner is) and idle_task(0) is
  not task_curr() while the attempt runs on CPU 0, so both pass the first attempt's
  stack check.  Once the spinner stops, CPU 1 idles: an attempt that finds
  idle_task(1) running fails, and wake_up_if_idle() sends it through do_idle(),
  where klp_update_patch_state() switches it (6.1 transition.c:412-418 and
  sched/idle.c:355, 6.12 :479-485 and :378, 7.3 :458-464); the retry a second
  later completes.  Same settled state; the model does not count that attempt.
"""

from __future__ import annotations

from harness.model.kernel.bpf import SLEEP_KEY, sleeper_unreliable
from harness.model.kernel.ftrace import ftrace_call
from harness.model.kernel.klp import KLP_UNDEFINED, ORIG, Module, Task
from harness.model.kernel.patch import klp_ftrace_handler
from harness.model.kernel.system import Kernel
from harness.model.profiles import ModelProfile
from harness.model.variants import Variant
from harness.scenario.kstrto import parse_bool_param
from harness.scenario.step_types import Load, SetParam, Start, Step
from harness.scenario.types import Scenario, Spinner, TargetModule

SPINNER_FILE = "spinner"  # /sys/kernel/debug/klp_harness/<target>/spinner
STOPPED = "stopped"


def spinner_refusal(profile: ModelProfile, spinner: Spinner, cpus: int = 1) -> str | None:
    """Why a spinner cannot run on this profile's guest, or cannot be predicted there,
    or None.

    Without cond_resched() a kernel thread that never sleeps keeps a voluntary
    kernel's only CPU for ever: no other task, the runner's shell included, runs
    again (and the soft lockup detector fires after 20 s).

    A spinner between calls that no CPU is given to, in a guest with two: the
    scheduler places it, and moves it, on either CPU.  Where it is when an attempt
    looks decides the transition: off its CPU it passes the stack check (nothing
    patched on its stack), running on the other CPU it is refused, task_curr()
    (klp_check_and_switch_task: 6.1 transition.c:272, 6.12 :297, 7.3 :288), and what
    switches it later is the retry work's placement (see "A spinner bound to CPU 1"
    above).  Seen on 6.1 (`fuzz --seed 0`): a load the model predicted to complete
    held its transition, "signaling remaining tasks", the spinner running between
    calls.  A spinner inside its function blocks wherever it runs (its stack is
    checked, or it is running), so only this kind is refused."""
    if cpus > 1 and spinner.cpu is None and not spinner.inside:
        return (
            f"a spinner calling {spinner.func} in a loop, on no CPU of its own in a "
            f"{cpus}-CPU guest: whether an attempt finds it running on the other CPU "
            "(task_curr: -EBUSY, transition.c klp_check_and_switch_task) or off it is "
            "the scheduler's choice; bind it (spinner.cpu = 1)"
        )
    if spinner.cond_resched or profile.preempts_kernel_code:
        return None
    return (
        f"a spinner in {spinner.func} without cond_resched() would never give up the "
        f"guest's only CPU on {profile.series} (voluntary preemption: sched/core.c "
        "preempt_dynamic_init)"
    )


def spinner_started(scenario: Scenario, step: Step) -> Spinner | None:
    """The spinner `step` starts (`start`, `load T spin=Y`, `set T spin Y`), if any."""
    if isinstance(step, Start):
        name, values = step.target, ["Y"]
    elif isinstance(step, Load):
        name, values = step.module, [v for p, v in step.params if p == SPINNER_PARAM]
    elif isinstance(step, SetParam) and step.param == SPINNER_PARAM:
        name, values = step.module, [step.value]
    else:
        return None
    desc = next((t for t in scenario.targets if t.name == name), None)
    if desc is None or desc.spinner is None or not any(parse_bool_param(v) for v in values):
        return None
    return desc.spinner


def _forked_state(k: Kernel) -> int:
    """klp_copy_process(): the parent's state.  kthreadd (or the runner's shell) has
    switched by the time a step runs, so: the target state during a transition."""
    if k.klp_transition_patch is None:
        return KLP_UNDEFINED
    if k.variant is Variant.FORK_INITIAL_STATE:
        return int(not k.klp_target_state)  # as if nothing were copied from the parent
    return k.klp_target_state


def checked_while_running(k: Kernel, task: Task) -> bool:
    """Whether a pinned spinner's own stack is checked while it runs on its CPU
    (6.12's klp_cond_resched(), see the module docstring); else no attempt can
    switch it."""
    if not k.profile.klp_cond_resched:
        return False
    mod = k.modules.get(task.target)
    desc = mod.desc if mod is not None else None
    spinner = desc.spinner if isinstance(desc, TargetModule) else None
    return spinner is not None and spinner.cond_resched


def pinned_refusal(k: Kernel) -> str | None:
    """Why the model cannot say when a transition a pinned spinner holds completes,
    or None (7.3's global retry timer, see the module docstring)."""
    if k.klp_transition_patch is None or k.profile.klp_cond_resched:
        return None
    if not k.profile.preempts_kernel_code:
        return None
    for task in k.tasks:
        if task.pinned and task.patch_state != k.klp_target_state:
            return (
                f"{task.target}'s spinner runs on CPU 1 during a transition: on "
                f"{k.profile.series} a retry whose timer fires on CPU 1 preempts it and "
                "switches it, at a time the model does not know (workqueue.c "
                "add_timer_global, lazy preemption)"
            )
    return None


def spinner_of(k: Kernel, mod: Module) -> Task | None:
    for task in k.tasks:
        if task.spinner and task.target == mod.name:
            return task
    return None


def spinner_start(k: Kernel, mod: Module) -> None:
    """kthread_run(): the thread enters its function through its ftrace call site (a
    tracer or kprobe there sees it) and the handler, in the state it was forked with."""
    desc = mod.desc
    assert isinstance(desc, TargetModule) and desc.spinner is not None
    if spinner_of(k, mod) is not None:
        return
    key = (mod.name, desc.spinner.func)
    state = _forked_state(k)
    code = klp_ftrace_handler(k, key, state)
    ftrace_call(k, key, code.name if code is not None else ORIG)
    k.tasks.append(
        Task(
            target=mod.name,
            key=key,
            code=code,
            patch_state=state,
            pending=False,
            spinner=True,
            inside=desc.spinner.inside,
            pinned=desc.spinner.cpu is not None,
        )
    )


def spinners_call(k: Kernel) -> None:
    """A spinner between calls calls its function all the while it runs: between two
    of the runner's commands its shell waits for the host and the spinner has the CPU
    (its own, if pinned).  Every ftrace user of the function sees those calls, run by
    the implementation the spinner's patch_state picks (`observe_actors`)."""
    for task in k.tasks:
        if task.spinner and not task.inside:
            state = task.patch_state if k.klp_transition_patch is not None else KLP_UNDEFINED
            code = klp_ftrace_handler(k, task.key, state)
            ftrace_call(k, task.key, code.name if code is not None else ORIG)


def spinner_stop(k: Kernel, mod: Module) -> None:
    """kthread_stop(): the thread returns from its function and exits."""
    task = spinner_of(k, mod)
    if task is not None:
        k.tasks.remove(task)


def set_spinner_param(k: Kernel, mod: Module, value: str) -> None:
    """Writing the spinner parameter: true starts the thread, false stops it."""
    mod.params[SPINNER_PARAM] = value
    if parse_bool_param(value):
        spinner_start(k, mod)
    else:
        spinner_stop(k, mod)


SPINNER_PARAM = Spinner("").param


def rcu_tasks_holdouts(k: Kernel) -> list[str]:
    """Running spinners that never report an RCU Tasks quiescent state."""
    names = []
    for task in k.tasks:
        mod = k.modules.get(task.target)
        desc = mod.desc if mod is not None else None
        spinner = desc.spinner if isinstance(desc, TargetModule) else None
        if task.spinner and spinner is not None and not spinner.rcu_tasks_qs:
            names.append(f"{task.target}'s spinner")
    return names


def spawn(k: Kernel, name: str) -> int:
    """`spawn NAME`: the group's processes start (forked by the runner's shell, which
    switched: they start in the target state).  Looping ones stay switched (see
    above); sleepers are followed as tasks, asleep in clock_nanosleep(), with an
    unreliable stack when an fexit trampoline was on their way (harness/model/kernel/bpf.py).
    A group that runs already is left as it is (harness/runner/actions.py)."""
    if name in k.processes:
        return 0
    k.processes.add(name)
    group = next(g for g in k.scenario.processes if g.name == name)
    if group.run == "sleep":
        unreliable = sleeper_unreliable(k)
        for _ in range(group.count):
            k.tasks.append(
                Task(
                    target=name,
                    key=SLEEP_KEY,
                    code=None,
                    patch_state=_forked_state(k),
                    process=True,
                    unreliable=unreliable,
                )
            )
    return 0


def kill(k: Kernel, name: str) -> int:
    """SIGKILL and reap: the group's tasks are gone."""
    k.processes.discard(name)
    k.tasks[:] = [t for t in k.tasks if not (t.process and t.target == name)]
    return 0


def _group_state(k: Kernel, name: str) -> str:
    """The patch_state of a running group's processes, as the runner lists them."""
    if k.klp_transition_patch is None:
        return str(KLP_UNDEFINED)
    states = {t.patch_state for t in k.tasks if t.process and t.target == name}
    return ",".join(map(str, sorted(states))) or str(k.klp_target_state)


def switches_when_checked(task: Task) -> bool:
    """A spinner between calls is never found inside its function when an attempt
    looks at it (see the module docstring); a spun-in or parked task is checked."""
    return task.spinner and not task.inside


def observe_actors(k: Kernel) -> dict[str, str]:
    """`<target>:spinner` -> `stopped`, or its patch_state and the implementation it
    last returned from (`none` while it spins inside its function)."""
    actors: dict[str, str] = {}
    for group in k.scenario.processes:
        running = group.name in k.processes
        states = _group_state(k, group.name)
        actors[group.name] = f"patch_state={states} count={group.count}" if running else STOPPED
    for name, mod in k.modules.items():
        desc = mod.desc
        if not isinstance(desc, TargetModule) or desc.spinner is None:
            continue
        task = spinner_of(k, mod)
        if task is None:
            actors[f"{name}:{SPINNER_FILE}"] = STOPPED
            continue
        state = task.patch_state if k.klp_transition_patch is not None else KLP_UNDEFINED
        if task.inside:
            ran = "none"
        else:
            code = klp_ftrace_handler(k, task.key, state)
            ran = code.name if code is not None else "orig"
        actors[f"{name}:{SPINNER_FILE}"] = f"patch_state={state} ran={ran}"
    return actors
