"""Other ftrace users of a patched function: kprobes (kernel/kprobes.c) and ftrace's
own rules for sharing a call site (kernel/trace/ftrace.c).

Livepatch registers one ftrace_ops per patched function, flagged
FTRACE_OPS_FL_IPMODIFY (it changes the saved instruction pointer) and PERMANENT
(kernel/livepatch/patch.c:klp_patch_func, the same in 6.1, 6.12 and 7.3).  A kprobe on
a function's entry is, on x86 with CONFIG_KPROBES_ON_FTRACE (set in all three Debian
profiles), armed through ftrace too: on `kprobe_ipmodify_ops` (IPMODIFY) when it has a
post_handler, on `kprobe_ftrace_ops` otherwise (kprobes.c:arm_kprobe_ftrace; 6.1 :1101,
6.12 :1101, 7.3 :1174).  ftrace lets only one IPMODIFY ops own a call site: whichever
registers second fails with -EBUSY (ftrace.c:__ftrace_hash_update_ipmodify, "Cannot
have two ipmodify on same rec"; 6.1 :1911, 7.3 :2037), called from ftrace_startup()
through ftrace_hash_ipmodify_enable() for an ops being registered.  Neither side logs
the refusal itself: livepatch logs `failed to register ftrace handler ... (-16)`
(patch.c:206-209) and unwinds; register_kprobe() returns -EBUSY silently
(kprobes.c:__arm_kprobe_ftrace).

A kprobe's handler runs from the call site, whatever livepatch then redirects the call
to, and only while ftrace calls out at all: `kernel.ftrace_enabled=0` turns every call
site off (ftrace.c:ftrace_enable_sysctl -> ftrace_shutdown_sysctl; 6.1 :8534, 6.12
:8918), and kprobe ops are not PERMANENT, so the sysctl allows it while they are
registered.  On 7.3 the sysctl no longer turns ftrace off (model/profiles.py).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.model.klp import FuncKey
from harness.scenario.types import VMLINUX, Kprobe

if TYPE_CHECKING:
    from harness.model.system import Kernel


@dataclass(eq=False, slots=True)
class KprobeUser:
    """A registered kprobe: the module that owns it, where, and whether its
    pre_handler has run."""

    owner: str
    key: FuncKey
    post_handler: bool
    armed: bool = True  # False: registered without being armed (ModelProfile field)
    hit: bool = False

    @property
    def ipmodify(self) -> bool:
        return self.post_handler


def kprobe_key(spec: Kprobe) -> FuncKey:
    return (VMLINUX, spec.func)


def ipmodify_owner(k: Kernel, key: FuncKey) -> KprobeUser | None:
    """The non-livepatch ftrace user holding FTRACE_FL_IPMODIFY on `key`'s call site."""
    for probe in k.kprobes:
        if probe.key == key and probe.ipmodify and probe.armed:
            return probe
    return None


def register_kprobe(k: Kernel, owner: str, spec: Kprobe) -> int:
    """register_kprobe() of a kprobe on a function's ftrace location: -EBUSY when it
    needs IPMODIFY and a livepatch ops (or another IPMODIFY kprobe) owns the site
    (ftrace_startup -> ftrace_hash_ipmodify_enable for the first kprobe of its ops;
    ftrace_set_filter_ip -> ftrace_hash_ipmodify_update once the ops is registered:
    the same check, kprobes.c:__arm_kprobe_ftrace).

    Since the kprobe_mutex guard() rework (after 6.12; in 7.3.4) __register_kprobe()
    drops arm_kprobe()'s error: the kprobe leaves the hash table unarmed and
    register_kprobe() returns 0 (7.3 kprobes.c:1709-1720), so the module loads with a
    kprobe that never fires (`kprobe_arm_error_lost`)."""
    key = kprobe_key(spec)
    armed = not (spec.post_handler and (key in k.klp_ops or ipmodify_owner(k, key)))
    if not armed and not k.profile.kprobe_arm_error_lost:
        return -errno.EBUSY
    k.kprobes.append(KprobeUser(owner, key, spec.post_handler, armed))
    return 0


def unregister_kprobe(k: Kernel, owner: str) -> KprobeUser | None:
    """unregister_kprobe(): the kprobe is gone; returns it (its `hit` is logged)."""
    for probe in k.kprobes:
        if probe.owner == owner:
            k.kprobes.remove(probe)
            return probe
    return None


def livepatch_ipmodify_conflict(k: Kernel, key: FuncKey) -> bool:
    """Whether registering livepatch's ftrace ops for `key` fails with -EBUSY because
    a kprobe with a post_handler owns IPMODIFY there (klp_patch_func ->
    register_ftrace_function -> ftrace_startup -> ftrace_hash_ipmodify_enable)."""
    return ipmodify_owner(k, key) is not None


def ftrace_call(k: Kernel, key: FuncKey) -> None:
    """A call of `key` went through its ftrace call site: every kprobe there runs its
    pre_handler, provided ftrace calls out (kernel.ftrace_enabled)."""
    if not k.ftrace_enabled:
        return
    for probe in k.kprobes:
        if probe.key == key and probe.armed:
            probe.hit = True
