"""The world around kernel/livepatch: the module loader (kernel/module/main.c), what our
generated modules do in init/exit, ftrace_enabled, and the userland tools the runner
drives (kmod's modprobe, busybox rmmod, shell writes to sysfs, procps sysctl).

Functions named after kernel ones return the kernel's 0/-errno; the `do_*` functions are
one scenario step each, log what the runner writes to /dev/kmsg (docs/runner-protocol.md)
and return the positive errno the runner records.
"""

from __future__ import annotations

import errno
import os

from harness.model.kernel.callbacks import free_states
from harness.model.kernel.core import (
    enabled_store,
    force_store,
    klp_enable_patch,
    klp_module_coming,
    klp_module_going,
    klp_patch_of_module,
)
from harness.model.kernel.ftrace import ftrace_call, register_kprobe, unregister_kprobe
from harness.model.kernel.klp import KLP_UNDEFINED, ORIG, Module, ModuleState, Task
from harness.model.kernel.patch import klp_ftrace_handler
from harness.model.kernel.shadow import run_shadow_script
from harness.model.kernel.system import Kernel
from harness.model.kernel.tasks import set_spinner_param, spinner_start, spinner_stop
from harness.scenario.kstrto import KstrtoError, kstrtoint, parse_bool_param
from harness.scenario.step_types import Load
from harness.scenario.types import VMLINUX, Blocker, KernelModule, PatchModule, TargetModule

# kmod's modprobe words these two errnos itself (tools/modprobe.c); others: strerror().
KMOD_MESSAGES = {
    errno.EEXIST: "Module already in kernel",
    errno.ENOENT: "Unknown symbol in module, or unknown parameter (see dmesg)",
}


def _caller_patch_state(k: Kernel) -> int:
    """patch_state of a task that starts running during a step: every task but a
    parked one has switched to the target by the time the runner acts."""
    return k.klp_target_state if k.klp_transition_patch is not None else KLP_UNDEFINED


# ---- blocker work of a target module ----------------------------------------------------


def blocker_work_start(k: Kernel, mod: Module) -> None:
    """The work logs `<func> enter`, calls the blocker func through its ftrace call
    site (a tracer or kprobe there sees it; the handler picks the implementation) and,
    while its parameter is true, sleeps in it."""
    desc = mod.desc
    assert isinstance(desc, TargetModule) and desc.blocker is not None
    key = (mod.name, desc.blocker.func)
    if not desc.ko:  # a module file's lines are its own (not predicted)
        k.pr_info(mod.name, f"{desc.blocker.func} enter")
    state = _caller_patch_state(k)
    code = klp_ftrace_handler(k, key, state)
    ftrace_call(k, key, code.name if code is not None else ORIG)
    if _parks(desc.blocker, mod.params.get(desc.blocker.param)):
        k.tasks.append(Task(target=mod.name, key=key, code=code, patch_state=state))
    elif not desc.ko:
        k.pr_info(mod.name, f"{desc.blocker.func} exit")


def _parks(blocker: Blocker, value: str | None) -> bool:
    """A generated work parks while its bool parameter is true; a module file's
    timed work (busymod's `msleep(sleep_secs * 1000)`) while it sleeps a positive
    number of seconds (kstrtoint, as param_set_int reads it)."""
    if not blocker.timed:
        return bool(parse_bool_param(value or "N"))
    try:
        return kstrtoint(value or "0") > 0
    except KstrtoError:
        return False


def blocker_work_release(k: Kernel, mod: Module) -> None:
    """The parked work returns (its parameter went false)."""
    for task in k.tasks:
        if task.target == mod.name and not task.spinner:
            k.tasks.remove(task)
            if not (isinstance(mod.desc, TargetModule) and mod.desc.ko):
                k.pr_info(mod.name, f"{task.key[1]} exit")
            return


def set_blocker_param(k: Kernel, mod: Module, value: str) -> None:
    """Writing the blocker parameter: true starts the work unless it is parked
    already (the generated module's param ops), false lets a parked work return."""
    desc = mod.desc
    assert isinstance(desc, TargetModule) and desc.blocker is not None
    parked = any(task.target == mod.name and not task.spinner for task in k.tasks)
    mod.params[desc.blocker.param] = value
    if parse_bool_param(value):
        if not parked:
            blocker_work_start(k, mod)
    elif parked:
        blocker_work_release(k, mod)


# ---- module init/exit of generated modules ----------------------------------------------


def target_init(k: Kernel, mod: Module) -> int:
    desc = mod.desc
    assert isinstance(desc, TargetModule)
    if desc.log_init_exit:
        k.pr_info(mod.name, f"{mod.name}_init")
    _run_shadow(k, mod)
    if desc.kprobe is not None:
        ret = register_kprobe(k, mod.name, desc.kprobe)
        if ret:
            return ret
    if desc.blocker is not None:
        blocker_work_start(k, mod)
    if desc.spinner is not None and parse_bool_param(mod.params.get(desc.spinner.param, "N")):
        spinner_start(k, mod)
    return 0


def target_exit(k: Kernel, mod: Module) -> None:
    desc = mod.desc
    assert isinstance(desc, TargetModule)
    if desc.blocker is not None:
        mod.params[desc.blocker.param] = "N"
        blocker_work_release(k, mod)  # flush_work()
    probe = unregister_kprobe(k, mod.name)
    if probe is not None:
        hit = "was hit" if probe.hit else "was never hit"
        k.pr_info(mod.name, f"{probe.kind} on {probe.key[1]} {hit}")
    if desc.spinner is not None:
        spinner_stop(k, mod)  # kthread_stop()
    if desc.log_init_exit:
        k.pr_info(mod.name, f"{mod.name}_exit")


def patch_init(k: Kernel, mod: Module) -> int:
    """Shadow script first, then `return klp_enable_patch(&patch)`."""
    desc = mod.desc
    assert isinstance(desc, PatchModule)
    _run_shadow(k, mod)
    replace = kstrtoint(mod.params.get("replace", str(int(desc.replace)))) != 0
    mod.patch = klp_patch_of_module(mod, replace)
    ret = klp_enable_patch(k, mod.patch)
    if ret:
        free_states(k, mod.patch)  # what a post_unpatch kept ("keeping space")
    return ret


def patch_exit(k: Kernel, mod: Module) -> None:
    """Frees the state data still held: a replaced patch runs no unpatch callback, and
    a post_unpatch that logged "keeping space" kept its own."""
    if mod.patch is not None:
        free_states(k, mod.patch)


def _run_shadow(k: Kernel, mod: Module) -> None:
    """The module's shadow-variable script, logged with the module's prefix."""
    desc = mod.desc
    if isinstance(desc, KernelModule) or not desc.shadow:
        return
    if isinstance(desc, PatchModule):
        kind, names = "patch", [m.name for m in k.scenario.patches]
    else:
        kind, names = "target", [m.name for m in k.scenario.targets]
    index = names.index(mod.name)
    for line in run_shadow_script(k.shadow, mod.instance, desc.shadow, f"{kind}[{index}].shadow"):
        k.pr_info(mod.name, line)


# ---- kernel/module/main.c ---------------------------------------------------------------


def load_module(
    k: Kernel, desc: TargetModule | PatchModule | KernelModule, params: dict[str, str]
) -> int:
    """init_module(): coming hook, then the module's init; a failing init goes through
    the going hook before the module is freed."""
    k.module_instances += 1
    mod = Module(name=desc.name, desc=desc, instance=k.module_instances, params=params)
    k.modules[mod.name] = mod
    ret = klp_module_coming(k, mod)  # prepare_coming_module()
    if ret:
        del k.modules[mod.name]
        return ret
    if isinstance(desc, KernelModule):
        ret = 0  # a module of the kernel: its own init, silent in our log filter
    else:
        init = patch_init if isinstance(desc, PatchModule) else target_init
        ret = init(k, mod)  # do_init_module()
    if ret:
        mod.state = ModuleState.GOING
        klp_module_going(k, mod)
        del k.modules[mod.name]
        return ret
    mod.state = ModuleState.LIVE
    return 0


def delete_module(k: Kernel, name: str) -> int:
    """delete_module(O_NONBLOCK): refused while referenced; exit, then the going hook."""
    mod = k.modules.get(name)
    if mod is None:
        return -errno.ENOENT
    if mod.refcnt:
        return -errno.EAGAIN
    mod.state = ModuleState.GOING
    if isinstance(mod.desc, TargetModule):
        target_exit(k, mod)
    elif isinstance(mod.desc, PatchModule):
        patch_exit(k, mod)
    klp_module_going(k, mod)
    del k.modules[name]
    return 0


# ---- the runner's steps ----------------------------------------------------------------


def do_load(k: Kernel, step: Load) -> int:
    """modprobe MODULE k=v ...; an already loaded module is left alone (kmod)."""
    k.userland(" ".join(["% modprobe", step.module, *(f"{p}={v}" for p, v in step.params)]))
    if step.module in k.modules:
        return 0
    desc: TargetModule | PatchModule | KernelModule
    try:
        desc = k.scenario.module(step.module)
    except KeyError:
        desc = KernelModule(step.module)  # a patch object's module of the kernel
    ret = load_module(k, desc, dict(step.params))
    if ret:
        text = KMOD_MESSAGES.get(-ret) or os.strerror(-ret)
        k.userland(f"modprobe: ERROR: could not insert '{step.module}': {text}")
    return -ret


def do_unload(k: Kernel, name: str) -> int:
    k.userland(f"% rmmod {name}")
    return -delete_module(k, name)


def do_enabled(k: Kernel, name: str, value: bool) -> int:
    k.userland(f"% echo {int(value)} > /sys/kernel/livepatch/{name}/enabled")
    patch = k.sysfs_patch(name)
    if patch is None:
        return errno.ENOENT
    return -enabled_store(k, patch, value)


def do_force(k: Kernel, name: str) -> int:
    k.userland(f"% echo 1 > /sys/kernel/livepatch/{name}/force")
    patch = k.sysfs_patch(name)
    if patch is None:
        return errno.ENOENT
    return -force_store(k, patch, True)


def do_set_param(k: Kernel, name: str, param: str, value: str) -> int:
    """echo VALUE > /sys/module/MODULE/parameters/PARAM (all our params are 0644)."""
    k.userland(f"% echo {value} > /sys/module/{name}/parameters/{param}")
    mod = k.modules.get(name)
    if mod is None:
        return errno.ENOENT
    desc = mod.desc
    if isinstance(desc, TargetModule) and desc.blocker and param == desc.blocker.param:
        set_blocker_param(k, mod, value)
    elif isinstance(desc, TargetModule) and desc.spinner and param == desc.spinner.param:
        set_spinner_param(k, mod, value)
    else:
        mod.params[param] = value  # read by the module when it next uses it
    return 0


def do_wait_timed(k: Kernel, name: str) -> int:
    """`release` of a module file's timed work: nothing is written, the work returns
    when its sleep ends (the runner waits for the state this predicts)."""
    mod = k.modules.get(name)
    if mod is not None:
        blocker_work_release(k, mod)
    return 0


def do_sysctl_ftrace(k: Kernel, value: int) -> int:
    """sysctl kernel.ftrace_enabled=N: turning it off fails while any permanent ftrace
    ops (a livepatch handler) is registered (ftrace_enable_sysctl).  Since 7.3 turning
    it off is always refused (EOPNOTSUPP) and ftrace stays on."""
    if not value and k.profile.ftrace_off_refused:
        k.userland(
            'livepatch: sysctl: setting key "kernel.ftrace_enabled": '
            f"{os.strerror(errno.EOPNOTSUPP)}"
        )
        return errno.EOPNOTSUPP
    if not value and k.ftrace_enabled and k.klp_ops:
        k.userland(
            f'livepatch: sysctl: setting key "kernel.ftrace_enabled": {os.strerror(errno.EBUSY)}'
        )
        return errno.EBUSY
    k.ftrace_enabled = bool(value)
    k.userland(f"livepatch: kernel.ftrace_enabled = {value}")
    return 0


def do_call(k: Kernel, obj: str, func: str) -> int:
    """grep 'live patched' <file> > /dev/kmsg: a patch's implementation logs a line."""
    if obj != VMLINUX and obj not in k.modules:
        return errno.ENOENT
    code = klp_ftrace_handler(k, (obj, func), _caller_patch_state(k))
    ftrace_call(k, (obj, func), code.name if code is not None else ORIG)
    if code is not None:
        k.pr_info(code.name, "this has been live patched")
    return 0
