"""Typed description of a scenario: the modules it needs (its steps are in
`step_types.py`).

This is the contract between the scenario loader (TOML -> these types), the module
generator (these types -> C sources -> .ko), the reference model (these types ->
predictions) and the runner (these types -> guest commands). Everything here is
frozen and already validated: code that receives a `Scenario` may trust every name
to be a safe C identifier and every reference to resolve.

Vocabulary follows kernel/livepatch: a *patch* is a livepatch module (one
`struct klp_patch`), an *object* is `vmlinux` or a target module, a *func* is one
function of an object that the patch replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from harness.scenario.step_types import Step

VMLINUX = "vmlinux"

# vmlinux functions a patch may replace, and the /proc file whose read calls each.
VMLINUX_FUNCS: dict[str, str] = {
    "cmdline_proc_show": "/proc/cmdline",
    "meminfo_proc_show": "/proc/meminfo",
}


class Callback(Enum):
    """The four per-object callbacks of `struct klp_callbacks`."""

    PRE_PATCH = "pre_patch"
    POST_PATCH = "post_patch"
    PRE_UNPATCH = "pre_unpatch"
    POST_UNPATCH = "post_unpatch"


class ShadowOpKind(Enum):
    """Shadow variable API calls (kernel/livepatch/shadow.c)."""

    GET = "get"
    ALLOC = "alloc"
    GET_OR_ALLOC = "get_or_alloc"
    FREE = "free"
    FREE_ALL = "free_all"


@dataclass(frozen=True)
class ShadowOp:
    """One shadow-variable call made by a module's init, logged like upstream's
    test_klp_shadow_vars does.  `obj` is a small integer naming one of the module's
    parent objects (1, 2, 3, ...), `ctor_data` a small integer naming one of its
    constructor data slots; `dtor` says whether free/free_all pass a destructor."""

    kind: ShadowOpKind
    id: int
    obj: int = 0
    ctor_data: int = 0
    dtor: bool = False


@dataclass(frozen=True)
class Blocker:
    """A work item in a target module that runs `func` and can park inside it.

    Like upstream's test_klp_callbacks_busy: init queues the work, which logs
    `<func> enter`, calls `func` (through ftrace, so the implementation that runs is
    the current one), and while the module parameter `param` is true the running
    implementation sleeps in a loop; it logs `<func> exit` when it returns.  Loading
    with `param=Y` parks at once; `park`/`release` steps set and clear it later.

    `timed`: a module file's work that sleeps `param` seconds in `func` (the
    kernel's livepatch-callbacks-busymod and its `sleep_secs`): it parks when the
    module loads with a positive value and returns by itself; a `release` step
    waits for that (the runner's wait for the state the model predicts)."""

    func: str
    param: str = "block_transition"
    timed: bool = False


@dataclass(frozen=True)
class Kprobe:
    """A kprobe a target module registers in its init and unregisters in its exit, as
    upstream's test_klp_kprobe does: on the entry of `func` (a vmlinux function of
    VMLINUX_FUNCS), so on x86 it is an ftrace kprobe sharing the function's ftrace call
    site with livepatch.  With a `post_handler` it needs FTRACE_OPS_FL_IPMODIFY, which
    only one ftrace user of a function may hold (kernel/kprobes.c:arm_kprobe_ftrace).
    Its exit logs whether its pre_handler ever ran.  A `kretprobe` is registered with
    register_kretprobe() instead: its entry kprobe has no post_handler (kprobes.c:
    register_kretprobe sets none), and its exit logs whether its return handler ran."""

    func: str
    post_handler: bool = True
    kretprobe: bool = False
    # In the body, on the first instruction after the ftrace call site (+5, or +9
    # behind an ENDBR64): an int3 kprobe, no ftrace user; it sees only calls that run
    # the original's body.
    body: bool = False

    @property
    def kind(self) -> str:
        return "kretprobe" if self.kretprobe else "kprobe"

    @property
    def ftrace(self) -> bool:
        """Armed through ftrace on the function's entry (KPROBES_ON_FTRACE)."""
        return not self.body


@dataclass(frozen=True)
class Spinner:
    """A kernel thread of a target module that runs without ever sleeping: it calls
    `func` in a loop (`inside=False`, the function is on its stack only briefly) or
    spins inside it (`inside=True`, the function stays on its stack), calling
    cond_resched() on each turn or not.  Writing Y to the module parameter `spin`
    starts it (`start` step), N stops it (`stop`).  `rcu_tasks_qs` (between calls
    only): it calls cond_resched_tasks_rcu_qs() instead of cond_resched(), so it
    reports the RCU Tasks quiescent states a thread that never schedules voluntarily
    otherwise never gives (ftrace_shutdown() waits for them).  Reading
    `/sys/kernel/debug/klp_harness/<module>/spinner` prints its pid and which
    implementation of `func` it last returned from.  `cpu`: bound to that CPU
    (kthread_bind) in a guest with more than one (harness/scenario/cpus.py)."""

    func: str
    inside: bool = False
    cond_resched: bool = True
    rcu_tasks_qs: bool = False
    param: str = "spin"
    cpu: int | None = None


PROCESS_RUNS = ("getpid", "sleep")


@dataclass(frozen=True)
class Processes:
    """`count` user processes, each doing what `run` says: `getpid`, calling the
    getpid system call in a loop (the guest's klp-getpid, images/klp-getpid.c), as
    upstream's test-syscall runs test_klp-call_getpid; `sleep`, asleep in one long
    clock_nanosleep() (busybox `sleep`), the system call's functions on its stack.
    `spawn NAME` starts them in the guest (a sleeper has reached its sleep when the
    step ends), `kill NAME` ends them; records show their /proc/<pid>/patch_state."""

    name: str
    count: int = 2
    run: str = "getpid"


BPF_PROGS = ("fentry", "fexit")


@dataclass(frozen=True)
class BpfProgram:
    """An empty BPF tracing program of kind `prog` on the vmlinux function `func`,
    attached by `attach NAME` and detached by `detach NAME` (the guest's klp-bpf).
    BPF runs it from a trampoline that ftrace calls at `func`'s call site (a direct
    call, sharing the site with livepatch).  An fexit trampoline calls `func` itself,
    so it stays on the stack of a task inside `func` (harness/model/kernel/bpf.py)."""

    name: str
    prog: str
    func: str


@dataclass(frozen=True)
class TargetModule:
    """A module whose functions patches replace.  Each function is observable: reading
    `/sys/kernel/debug/klp_harness/<module>/<func>` calls it and prints which
    implementation ran."""

    name: str
    funcs: tuple[str, ...] = ()
    blocker: Blocker | None = None
    spinner: Spinner | None = None
    log_init_exit: bool = True  # prints `<name>_init` / `<name>_exit` like upstream
    shadow: tuple[ShadowOp, ...] = ()
    kprobe: Kprobe | None = None
    ko: str = ""  # an existing module file (harness.modules.external), not generated
    symbols: tuple[str, ...] = ()  # that file's functions, in kallsyms order


@dataclass(frozen=True)
class KlpState:
    """One `struct klp_state` of a patch (include/linux/livepatch.h)."""

    id: int
    version: int


@dataclass(frozen=True)
class FuncBody:
    """A replacement written by the scenario: the full C definition of a function with
    the original's signature (its name may be the original's), where it was written
    (the scenario file, or a .c file beside it) and the headers it needs."""

    code: str
    file: str  # path as the scenario names it: compile errors point here
    line: int  # line of `file` where `code` starts
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class FuncSpec:
    """What a patch says about one of its funcs beyond the name: `sympos` (the
    occurrence of the name in the object's kallsyms, 1-based; 0 = the name must be
    unique) and its own replacement body (None: the template's default)."""

    name: str
    sympos: int = 0
    body: FuncBody | None = None
    new_func: str = ""  # a module file's replacement symbol (harness.modules.elf)


@dataclass(frozen=True)
class PatchObject:
    """One `struct klp_object`: vmlinux, a target module or a module of the kernel
    (loaded or not)."""

    name: str  # VMLINUX, a target module name or a kernel module name
    funcs: tuple[str, ...] = ()
    callbacks: frozenset[Callback] = frozenset()
    specs: tuple[FuncSpec, ...] = ()  # funcs given as tables, in any order
    # A shadow variable id: the patch adds a field to the target's per-function
    # structure (its `struct klp_harness_func` entry) of every func it patches, as
    # samples/livepatch/livepatch-shadow-fix1.c adds one to `struct dummy`: attached in
    # the object's post_patch (or taken over when it exists), freed in post_unpatch.
    shadow_field: int | None = None
    # The patch reaches the target's static `klp_harness_calls` through a livepatch
    # relocation (a `.klp.rela.<obj>.*` section against a `.klp.sym.<obj>.*` symbol,
    # Documentation/livepatch/module-elf-format.rst), as kpatch-build and klp-build
    # output reaches a patched object's non-exported symbols; its replacements read
    # through it (harness/modules/klprela.py, harness/model/kernel/relocs.py).
    klp_relocs: bool = False

    def spec(self, func: str) -> FuncSpec:
        """The FuncSpec of `func` (a plain one when the file gave only its name)."""
        for spec in self.specs:
            if spec.name == func:
                return spec
        return FuncSpec(func)


@dataclass(frozen=True)
class PatchModule:
    """A livepatch module: one `struct klp_patch`.

    Every generated patch has two module parameters, as upstream's test modules do:
    `replace` (int, default from `replace` here) and `pre_patch_ret` (int, 0644,
    default from `pre_patch_ret` here), returned by every pre_patch callback."""

    name: str
    objects: tuple[PatchObject, ...]
    replace: bool = False
    pre_patch_ret: int = 0
    states: tuple[KlpState, ...] = ()
    shadow: tuple[ShadowOp, ...] = ()
    # An existing module file (harness.modules.external): its objects, states and
    # `replace` come from the file once resolved for a profile (`resolved`); its
    # callbacks log upstream's `callback_info()` lines only if `callback_lines`.
    ko: str = ""
    resolved: bool = True
    callback_lines: bool = True
    # kpatch's convention: a guest command that fails before the patch is in
    # effect, passes while it is, fails once it is not (a `check PATCH` step runs it)
    check: str = ""


Module = TargetModule | PatchModule


@dataclass(frozen=True)
class KernelModule:
    """A module of the profile's kernel that a patch object names.  The scenario loads
    and unloads it like its own modules (its .ko comes from the profile); it takes no
    parameters and the model gives it no init or exit lines."""

    name: str


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file, validated."""

    path: Path
    description: str
    steps: tuple[Step, ...]
    targets: tuple[TargetModule, ...] = ()
    patches: tuple[PatchModule, ...] = ()
    kernels: tuple[str, ...] = ()  # empty: every profile
    links: tuple[str, ...] = field(default_factory=tuple)
    processes: tuple[Processes, ...] = ()
    bpf: tuple[BpfProgram, ...] = ()
    cpus: int = 1  # the guest's CPU count (`cpus`, harness/scenario/cpus.py)
    # made for one profile with its module files already read (`klp-harness check`):
    # the profile's name and {module name: file}
    resolved_for: str = ""
    files: tuple[tuple[str, Path], ...] = ()
    # the file's text as read (a profile's resolution builds the scenario from it)
    text: str = field(default="", compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def modules(self) -> tuple[Module, ...]:
        return (*self.targets, *self.patches)

    @property
    def external(self) -> tuple[Module, ...]:
        """The modules given as files (`ko`), not generated."""
        return tuple(m for m in self.modules if m.ko)

    def patched_funcs(self) -> list[tuple[str, str]]:
        """Every (object, func) a generated patch names that a file read calls (a
        generated target's function, or a vmlinux function of VMLINUX_FUNCS), in
        first-seen order: the functions whose implementation is predicted and
        observed after every step (an external patch's replacement prints what it
        likes: `trigger` steps observe it)."""
        targets = {t.name for t in self.targets if not t.ko}
        seen: dict[tuple[str, str], None] = {}
        for patch in (p for p in self.patches if not p.ko):
            for obj in patch.objects:
                for func in obj.funcs:
                    if obj.name in targets or (obj.name == VMLINUX and func in VMLINUX_FUNCS):
                        seen[(obj.name, func)] = None
        return list(seen)

    def real_objects(self) -> list[str]:
        """Objects of patches that are neither vmlinux nor a scenario target: modules
        of the kernel itself, in first-seen order."""
        targets = {t.name for t in self.targets}
        seen: dict[str, None] = {}
        for patch in self.patches:
            for obj in patch.objects:
                if obj.name != VMLINUX and obj.name not in targets:
                    seen[obj.name] = None
        return list(seen)

    def patches_by_name(self) -> dict[str, PatchModule]:
        return {patch.name: patch for patch in self.patches}

    def module(self, name: str) -> Module:
        for mod in self.modules:
            if mod.name == name:
                return mod
        raise KeyError(name)
