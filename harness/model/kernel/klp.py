"""The model's data: `struct klp_patch/klp_object/klp_func` (include/linux/livepatch.h),
`struct module` (the few fields livepatch uses) and the tasks that matter.

These are deliberately plain mutable records with the kernel's field names, so code in
the sibling modules can be read side by side with kernel/livepatch/*.c.  The whole model
state lives in one `Kernel` object (harness.model.kernel.system); nothing here is global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from harness.scenario.types import Callback, KernelModule, KlpState, PatchModule, TargetModule

# klp_target_state / task->patch_state values (include/linux/livepatch.h, 6.1 names).
KLP_UNDEFINED = -1
# transition.c: failed attempts of klp_try_complete_transition() before
# klp_send_signals() logs and signals (SIGNALS_TIMEOUT, the same in 6.1, 6.12, 7.3)
SIGNALS_TIMEOUT = 15
ORIG = "orig"  # the implementation a call runs when no patch redirects it
KLP_UNPATCHED = 0
KLP_PATCHED = 1

# A function is identified like ftrace identifies it, by its address: its object and
# its name, with `,<sympos>` appended when sympos picks another than the first
# occurrence (sympos 0 and 1 both name the first, or only, one).
FuncKey = tuple[str, str]


def func_key(obj: str, name: str, sympos: int) -> FuncKey:
    return (obj, name if sympos <= 1 else f"{name},{sympos}")


class ModuleState(Enum):
    """enum module_state, with the text upstream's test modules print for it."""

    LIVE = "[MODULE_STATE_LIVE] Normal state"
    COMING = "[MODULE_STATE_COMING] Full formed, running module_init"
    GOING = "[MODULE_STATE_GOING] Going away"
    UNFORMED = "[MODULE_STATE_UNFORMED] Still setting it up"


@dataclass(eq=False, slots=True)
class Module:
    """struct module: one loaded instance of a scenario module."""

    name: str
    desc: TargetModule | PatchModule | KernelModule
    instance: int  # distinguishes reloads: a new instance has new addresses
    params: dict[str, str]
    state: ModuleState = ModuleState.COMING
    refcnt: int = 0
    klp_alive: bool = False
    patch: KlpPatch | None = None  # a livepatch module's static struct klp_patch


@dataclass(eq=False, slots=True)
class KlpFunc:
    """struct klp_func.  Its code (`new_func`) is its patch's replacement, or the
    original function for a nop."""

    old_name: str
    obj: KlpObject
    nop: bool = False
    patched: bool = False
    transition: bool = False
    key: FuncKey = ("", "")  # which func stack it goes on (func_key)
    sympos: int = 0  # old_sympos

    def __post_init__(self) -> None:
        self.key = func_key(self.obj.name, self.old_name, self.sympos)

    @property
    def code(self) -> KlpPatch | None:
        """Whose code `new_func` points to: the patch, or None for the original
        (klp_init_object_loaded sets a nop's new_func to old_func)."""
        return None if self.nop else self.obj.patch


@dataclass(eq=False, slots=True)
class KlpObject:
    """struct klp_object.  `mod` is set while the object is loaded (vmlinux always)."""

    name: str
    patch: KlpPatch
    callbacks: frozenset[Callback] = frozenset()
    funcs: list[KlpFunc] = field(default_factory=list)
    dynamic: bool = False
    patched: bool = False
    mod: Module | None = None
    post_unpatch_enabled: bool = False
    is_module: bool = True  # klp_is_module()
    # the patch has klp relocations into this object (harness/model/kernel/relocs.py), and
    # whether they hold an address now (written, not cleared since)
    klp_relocs: bool = False
    relocs_written: bool = False

    def __post_init__(self) -> None:
        self.is_module = self.name != "vmlinux"

    @property
    def loaded(self) -> bool:
        """klp_is_object_loaded()"""
        return not self.is_module or self.mod is not None


@dataclass(eq=False, slots=True)
class KlpPatch:
    """struct klp_patch.  `kobj` says whether /sys/kernel/livepatch/<name> exists."""

    mod: Module
    replace: bool
    states: tuple[KlpState, ...]
    objects: list[KlpObject] = field(default_factory=list)
    enabled: bool = False
    forced: bool = False
    kobj: bool = False
    name: str = ""  # patch->mod->name
    # states[i].data of the generated module, by state id: an allocation handle
    # (Kernel.kzalloc), None for NULL; module memory, so one per loaded instance
    state_data: dict[int, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.mod.name


@dataclass(eq=False, slots=True)
class Task:
    """A kernel task the model follows: a target module's blocker work parked inside
    one implementation of its blocker function, or a target's spinner thread
    (`spinner`; `inside`: it spins inside the function, else it calls it in a loop).
    How each kind switches is harness/model/kernel/tasks.py; every other task is assumed to
    switch at the first completion attempt (see docs/model-notes.md)."""

    target: str
    key: FuncKey
    code: KlpPatch | None  # the implementation it runs in (None: the original)
    patch_state: int = KLP_UNDEFINED
    pending: bool = False  # TIF_PATCH_PENDING
    spinner: bool = False
    inside: bool = True
    pinned: bool = False  # a spinner bound to a CPU of its own: running at every attempt
    process: bool = False  # a user process of a [[processes]] group (`target`: its name)
    unreliable: bool = False  # its stack cannot be walked reliably (harness/model/kernel/bpf.py)
