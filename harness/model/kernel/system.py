"""The whole modelled kernel: livepatch's globals plus the bits of the rest of the kernel
that livepatch talks to (loaded modules, ftrace_enabled, the log buffer, blocker tasks).

One `Kernel` holds what kernel/livepatch keeps in file-scope variables (`klp_patches`,
`klp_transition_patch`, `klp_target_state`, `klp_ops`) so the functions in core.py,
patch.py and transition.py can take it as their first argument and otherwise read like
the C they mirror.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.model.kernel.klp import KLP_UNDEFINED, FuncKey, KlpFunc, KlpPatch, Module, Task
from harness.model.kernel.shadow import ShadowTable
from harness.model.profiles import ModelProfile
from harness.model.variants import Variant
from harness.scenario.types import BpfProgram, Scenario

LIVEPATCH = "livepatch: "  # pr_fmt of kernel/livepatch/*.c

# Where a step waits in synchronize_rcu_tasks() for every task to schedule voluntarily
# (harness/model/kernel/tasks.py, "RCU Tasks"), said in a refusal: a dynamic ftrace
# ops unregistered (a func stack's last func, a BPF trampoline's last program) ...
FTRACE_SHUTDOWN = "removes an ftrace handler: synchronize_rcu_tasks() in ftrace_shutdown()"
# ... and, on 6.1, the first BPF direct call registered while none is
# (harness/model/kernel/bpf.py `attach`).
DIRECT_HASH_GROWN = (
    "makes the first BPF direct call: synchronize_rcu_tasks() in register_ftrace_direct_multi()"
)
# ... and a kprobe in a function's body registered or unregistered: the kprobe
# optimizer, kicked by optimize_kprobe()/unoptimize_kprobe() (6.1 kernel/kprobes.c
# :678-727, 7.3 :755-804), waits in synchronize_rcu_tasks() holding kprobe_mutex,
# cpus_read_lock and text_mutex (kprobe_optimizer, 6.1 :607-628, 6.12 :607-628, 7.3
# :630-652); the step returns, and the next module load waits for kprobe_mutex in
# kprobes_module_callback() (6.1 :2639-2651, 6.12 :2636-2648, 7.3 :2677-2686: seen on
# 7.3, "task klp-load blocked ... hung in kprobes_module_callback").
KPROBE_OPTIMIZER = (
    "(un)optimizes a kprobe in a body: kprobe_optimizer() holds kprobe_mutex, which "
    "every module load takes, in synchronize_rcu_tasks(), and"
)


@dataclass(eq=False, slots=True)
class Tracer:
    """The function tracer, filtered on one function: the original of `key`
    (impl "orig") or the replacement of `key` in patch `impl`."""

    label: str
    key: FuncKey
    impl: str
    called: bool = False


@dataclass(eq=False, slots=True)
class KprobeUser:
    """A registered kprobe: the module that owns it, where, and whether its
    pre_handler has run."""

    owner: str
    key: FuncKey
    post_handler: bool
    kind: str = "kprobe"  # or "kretprobe": its entry kprobe has no post_handler
    armed: bool = True  # False: registered without being armed (ModelProfile field)
    body: bool = False  # an int3 kprobe in the body: no ftrace user
    hit: bool = False

    @property
    def ipmodify(self) -> bool:
        return self.post_handler and not self.body


@dataclass(eq=False, slots=True)
class KprobeSite:
    """The ftrace-based kprobes of one address, as kprobes.c keeps them: one kprobe,
    or an aggregate probe (register_aggr_kprobe) whose `post_handler` is set once any
    member had one (add_new_kprobe) and, for a kprobe on ftrace, kept until the
    aggregate goes (__unregister_kprobe_top); `ipmodify`: the ops it was armed on,
    kprobe_ipmodify_ops or kprobe_ftrace_ops (harness/model/kernel/ftrace.py)."""

    ipmodify: bool
    post_handler: bool


class ModuleMemoryError(AssertionError):
    """A generated module would read or free memory it does not hold (freed, or never
    allocated).  Always a bug in kmod_templates/ (or in the model's mirror of it), never
    a kernel behaviour: on a real kernel it is a use-after-free or a double free, which
    the model would otherwise predict as if nothing happened (issue 17)."""


@dataclass(eq=False)
class Kernel:
    scenario: Scenario
    profile: ModelProfile
    dyndbg: bool = True  # `file kernel/livepatch/* +p` (and `func klp_try_switch_task -p`)
    variant: Variant | None = None  # a design the kernel did not take (model/variants.py)

    # kernel/livepatch/core.c, transition.c, patch.c
    klp_patches: list[KlpPatch] = field(default_factory=list)
    klp_transition_patch: KlpPatch | None = None
    klp_target_state: int = KLP_UNDEFINED
    klp_ops: dict[FuncKey, list[KlpFunc]] = field(default_factory=dict)  # top = last
    retry_scheduled: bool = False  # klp_transition_work is queued
    free_work: list[KlpPatch] = field(default_factory=list)  # patch->free_work queued
    # Variant.REPLACED_REENABLE only: replaced patches kept for enabling again
    klp_replaced_patches: list[KlpPatch] = field(default_factory=list)
    # steps a transition has stayed blocked since it (re)started (the fuzzer keeps
    # them few: each costs at least a retry, ~1 s)
    blocked_steps: int = 0
    # klp_signals_cnt, as harness/model/retries.py needs it: the step whose action
    # last ran klp_start_transition(), and how many of the attempts made by steps
    # themselves (not the retry work) failed since
    step_index: int = -1
    signals_epoch: int = -1
    direct_failures: int = 0
    in_retry: bool = False  # klp_transition_work_fn() is running
    completed_by_retry: bool = False  # this step's retry completed the transition

    # synchronize_rcu_tasks() calls so far, by where (FTRACE_SHUTDOWN, ...)
    rcu_tasks_waits: list[str] = field(default_factory=list)

    # the rest of the kernel
    modules: dict[str, Module] = field(default_factory=dict)
    ftrace_enabled: bool = True
    tasks: list[Task] = field(default_factory=list)  # parked blocker works, spinners
    processes: set[str] = field(default_factory=set)  # running [[processes]] groups
    bpf: list[BpfProgram] = field(default_factory=list)  # attached (harness/model/kernel/bpf.py)
    # functions whose BPF trampoline knows an IPMODIFY ops shares its call site
    # (tr->flags BPF_TRAMP_F_SHARE_IPMODIFY: harness/model/kernel/bpf.py)
    bpf_shares_ipmodify: set[FuncKey] = field(default_factory=set)
    broken_ops: set[FuncKey] = field(default_factory=set)  # ftrace ops left without func
    kprobes: list[KprobeUser] = field(default_factory=list)  # other ftrace users (ftrace.py)
    kprobe_sites: dict[FuncKey, KprobeSite] = field(default_factory=dict)  # armed, by address
    # a kernel report of a known bug (`warning at FILE:LINE FUNCTION`) the kernel
    # model itself raised: the step's record holds only it (harness/outcome/record.py)
    report: str = ""
    tracer: Tracer | None = None  # the function tracer's filter, if it runs
    shadow: ShadowTable = field(default_factory=ShadowTable)
    module_instances: int = 0
    # kzalloc()s the generated modules hold (their klp_state data): handle -> holder
    heap: dict[int, str] = field(default_factory=dict)
    allocations: int = 0

    log: list[str] = field(default_factory=list)  # this step's filtered log lines

    # ---- printk ------------------------------------------------------------------------

    def pr_notice(self, msg: str) -> None:
        self.log.append(LIVEPATCH + msg)

    pr_warn = pr_notice
    pr_err = pr_notice

    def pr_debug(self, msg: str) -> None:
        if self.dyndbg:
            self.log.append(LIVEPATCH + msg)

    def pr_info(self, module: str, msg: str) -> None:
        """A scenario module's pr_info (pr_fmt = KBUILD_MODNAME ": ")."""
        self.log.append(f"{module}: {msg}")

    def userland(self, line: str) -> None:
        """A line the runner writes to /dev/kmsg (docs/runner-protocol.md)."""
        self.log.append(line)

    # ---- the generated modules' allocations -------------------------------------------

    def kzalloc(self, holder: str) -> int:
        """A new allocation; the handle stands for its address (never reused)."""
        self.allocations += 1
        self.heap[self.allocations] = holder
        return self.allocations

    def kaccess(self, handle: int | None, who: str) -> None:
        """`who` reads or writes through a pointer: it must point at a live allocation."""
        if handle not in self.heap:
            what = "NULL" if handle is None else f"freed allocation #{handle}"
            raise ModuleMemoryError(f"{who} dereferences {what}")

    def kfree(self, handle: int | None, who: str) -> None:
        """kfree(): NULL is fine, anything else must be live."""
        if handle is None:
            return
        if handle not in self.heap:
            raise ModuleMemoryError(f"{who} frees allocation #{handle} twice")
        del self.heap[handle]

    # ---- lookups -----------------------------------------------------------------------

    def sysfs_patch(self, name: str) -> KlpPatch | None:
        """The patch behind /sys/kernel/livepatch/<name>, if that directory exists."""
        module = self.modules.get(name)
        if module is None or module.patch is None or not module.patch.kobj:
            return None
        return module.patch
