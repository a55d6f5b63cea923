"""The whole modelled kernel: livepatch's globals plus the bits of the rest of the kernel
that livepatch talks to (loaded modules, ftrace_enabled, the log buffer, blocker tasks).

One `Kernel` holds what kernel/livepatch keeps in file-scope variables (`klp_patches`,
`klp_transition_patch`, `klp_target_state`, `klp_ops`) so the functions in core.py,
patch.py and transition.py can take it as their first argument and otherwise read like
the C they mirror.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.model.klp import KLP_UNDEFINED, FuncKey, KlpFunc, KlpPatch, Module, Task
from harness.model.profiles import ModelProfile
from harness.model.shadow import ShadowTable
from harness.scenario.types import Scenario

LIVEPATCH = "livepatch: "  # pr_fmt of kernel/livepatch/*.c


@dataclass(eq=False)
class Kernel:
    scenario: Scenario
    profile: ModelProfile
    dyndbg: bool = True  # `file kernel/livepatch/* +p` (and `func klp_try_switch_task -p`)

    # kernel/livepatch/core.c, transition.c, patch.c
    klp_patches: list[KlpPatch] = field(default_factory=list)
    klp_transition_patch: KlpPatch | None = None
    klp_target_state: int = KLP_UNDEFINED
    klp_ops: dict[FuncKey, list[KlpFunc]] = field(default_factory=dict)  # top = last
    retry_scheduled: bool = False  # klp_transition_work is queued
    free_work: list[KlpPatch] = field(default_factory=list)  # patch->free_work queued
    # steps a transition has stayed blocked since it (re)started: the kernel starts
    # signalling after 15 retries (~15 s), which the model refuses to time
    blocked_steps: int = 0

    # the rest of the kernel
    modules: dict[str, Module] = field(default_factory=dict)
    ftrace_enabled: bool = True
    tasks: list[Task] = field(default_factory=list)  # parked blocker works
    shadow: ShadowTable = field(default_factory=ShadowTable)
    module_instances: int = 0

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

    # ---- lookups -----------------------------------------------------------------------

    def sysfs_patch(self, name: str) -> KlpPatch | None:
        """The patch behind /sys/kernel/livepatch/<name>, if that directory exists."""
        module = self.modules.get(name)
        if module is None or module.patch is None or not module.patch.kobj:
            return None
        return module.patch
