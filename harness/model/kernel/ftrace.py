"""Other ftrace users of a patched function: kprobes (kernel/kprobes.c), the function
tracer (kernel/trace/trace_functions.c) and ftrace's rules for sharing a call site
(kernel/trace/ftrace.c).

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

The function tracer's ops is neither IPMODIFY nor PERMANENT: it shares any call site
with livepatch in either order (upstream's test-ftrace.sh cases since 6.15 and 7.1).
Traced, the original's call site records every call, whatever livepatch then runs;
a replacement in a livepatch module has a call site of its own, recorded when the
livepatch sends a call there.

A kprobe in the body (past the call site) is an int3 kprobe, no ftrace user: it fires
only when the original's body runs, so a call livepatch redirects never reaches it
(Documentation/livepatch/livepatch.rst, "Kprobes in the original function are ignored
when the code is redirected").

Several kprobes on one address form an aggregate probe (kprobes.c:register_aggr_kprobe):
a kprobe that joins an armed one is not armed again, so it needs no IPMODIFY even with
a post_handler, and the aggregate's post_handler becomes aggr_post_handler
(add_new_kprobe), kept for a kprobe on ftrace until the aggregate goes
(__unregister_kprobe_top).  Its last disarm picks the ops by that post_handler
(disarm_kprobe_ftrace): an aggregate armed on kprobe_ftrace_ops is disarmed on
kprobe_ipmodify_ops, whose filter lacks the address, and WARNs (`KprobeSite`,
`ModelProfile.kprobe_disarm_wrong_ops`, docs/findings.md finding 5).

A kprobe's handler runs from the call site, whatever livepatch then redirects the call
to, and only while ftrace calls out at all: `kernel.ftrace_enabled=0` turns every call
site off (ftrace.c:ftrace_enable_sysctl -> ftrace_shutdown_sysctl; 6.1 :8534, 6.12
:8918), and kprobe ops are not PERMANENT, so the sysctl allows it while they are
registered.  On 7.3 the sysctl no longer turns ftrace off (model/profiles.py).
"""

from __future__ import annotations

import errno

from harness.errors import ScenarioError
from harness.model.kernel.klp import ORIG, FuncKey
from harness.model.kernel.system import KPROBE_OPTIMIZER, Kernel, KprobeSite, KprobeUser, Tracer
from harness.model.variants import Variant
from harness.scenario.step_types import Trace
from harness.scenario.types import VMLINUX, Kprobe


def kprobe_key(spec: Kprobe) -> FuncKey:
    return (VMLINUX, spec.func)


def ipmodify_owner(k: Kernel, key: FuncKey) -> KprobeUser | None:
    """The non-livepatch ftrace user holding FTRACE_FL_IPMODIFY on `key`'s call site:
    a kprobe of a site armed on kprobe_ipmodify_ops."""
    site = k.kprobe_sites.get(key)
    if site is None or not site.ipmodify:
        return None
    return next(p for p in k.kprobes if p.key == key and p.armed and not p.body)


# Where each series' __disarm_kprobe_ftrace() WARN_ONCE()s (kernel/kprobes.c), in the
# function the WARN is in: a symbol of its own in 6.1, inlined into
# disarm_kprobe_ftrace() in 6.12 and 7.3 (each profile's kallsyms).
DISARM_WARNING = {
    "6.1": "warning at kernel/kprobes.c:1126 __disarm_kprobe_ftrace",
    "6.12": "warning at kernel/kprobes.c:1130 disarm_kprobe_ftrace",
    "7.3": "warning at kernel/kprobes.c:1203 disarm_kprobe_ftrace",
}


def register_kprobe(k: Kernel, owner: str, spec: Kprobe) -> int:
    """register_kprobe() of a kprobe on a function's ftrace location: -EBUSY when it
    needs IPMODIFY and a livepatch ops (or another IPMODIFY kprobe) owns the site
    (ftrace_startup -> ftrace_hash_ipmodify_enable for the first kprobe of its ops;
    ftrace_set_filter_ip -> ftrace_hash_ipmodify_update once the ops is registered:
    the same check, kprobes.c:__arm_kprobe_ftrace).

    Since the kprobe_mutex guard() rework (after 6.12; in 7.3.4) __register_kprobe()
    drops arm_kprobe()'s error: the kprobe leaves the hash table unarmed and
    register_kprobe() returns 0 (7.3 kprobes.c:1709-1720), so the module loads with a
    kprobe that never fires (`kprobe_arm_error_lost`).

    A kprobe on an address an armed kprobe holds joins it as an aggregate
    (register_aggr_kprobe, 6.1 kprobes.c:1296, 6.12 :1305, 7.3 :1372): nothing is armed
    again, so a post_handler needs no IPMODIFY there, and the aggregate's post_handler
    is set (add_new_kprobe)."""
    key = kprobe_key(spec)
    if spec.body:  # int3 in the body (arch_prepare_kprobe): shares nothing with ftrace
        k.kprobes.append(KprobeUser(owner, key, spec.post_handler, body=True))
        # the optimizer runs whether or not it optimizes this one (can_optimize reads
        # the code, which the model does not)
        k.rcu_tasks_waits.append(KPROBE_OPTIMIZER)
        return 0
    site = k.kprobe_sites.get(key)
    if site is not None:  # joins the armed aggregate (register_aggr_kprobe): no arming
        site.post_handler = site.post_handler or spec.post_handler
        k.kprobes.append(KprobeUser(owner, key, spec.post_handler, spec.kind))
        return 0
    ipmodify = spec.post_handler and k.variant is not Variant.KPROBE_POST_HANDLER_SHARES
    armed = not (ipmodify and (key in k.klp_ops or ipmodify_owner(k, key)))
    if not armed and not k.profile.kprobe_arm_error_lost:
        return -errno.EBUSY
    k.kprobes.append(KprobeUser(owner, key, spec.post_handler, spec.kind, armed))
    if armed:
        k.kprobe_sites[key] = KprobeSite(spec.post_handler, spec.post_handler)
    return 0


def unregister_kprobe(k: Kernel, owner: str) -> KprobeUser | None:
    """unregister_kprobe(): the kprobe is gone; returns it (its `hit` is logged).  The
    last one of a site disarms it, on the ops its post_handler names: an aggregate
    armed on kprobe_ftrace_ops that a kprobe with a post_handler joined WARNs there
    (`kprobe_disarm_wrong_ops`)."""
    probe = next((p for p in k.kprobes if p.owner == owner), None)
    if probe is None:
        return None
    k.kprobes.remove(probe)
    if probe.body:
        k.rcu_tasks_waits.append(KPROBE_OPTIMIZER)
        return probe
    site = k.kprobe_sites.get(probe.key)
    if not probe.armed or site is None:
        return probe
    if any(p.key == probe.key and p.armed and not p.body for p in k.kprobes):
        return probe
    del k.kprobe_sites[probe.key]
    if site.post_handler and not site.ipmodify and k.profile.kprobe_disarm_wrong_ops:
        k.report = _disarm_warning(k)
    return probe


def _disarm_warning(k: Kernel) -> str:
    series = k.profile.series
    if series not in DISARM_WARNING:
        raise ScenarioError(
            "steps",
            f"kprobes' disarm WARN on {series}: the model knows its line only in "
            f"{', '.join(DISARM_WARNING)}",
        )
    return DISARM_WARNING[series]


def livepatch_ipmodify_conflict(k: Kernel, key: FuncKey) -> bool:
    """Whether registering livepatch's ftrace ops for `key` fails with -EBUSY because
    a kprobe with a post_handler owns IPMODIFY there (klp_patch_func ->
    register_ftrace_function -> ftrace_startup -> ftrace_hash_ipmodify_enable)."""
    if k.variant is Variant.KPROBE_POST_HANDLER_SHARES:
        return False
    return ipmodify_owner(k, key) is not None


def ftrace_call(k: Kernel, key: FuncKey, impl: str) -> None:
    """A call of `key` went through its ftrace call site and then ran `impl` (a patch's
    name or "orig"): every kprobe there runs its pre_handler (a kretprobe's hooks the
    return, whose handler runs when whichever implementation returns) and a tracer of the
    original records it, provided ftrace calls out (kernel.ftrace_enabled); a tracer
    of a replacement records it when `impl` is that replacement."""
    for probe in k.kprobes:
        if probe.key == key and probe.body and impl == ORIG:
            probe.hit = True  # the original's body ran: its int3 fires, ftrace or not
    if not k.ftrace_enabled:
        return
    for probe in k.kprobes:
        if probe.key == key and probe.armed and not probe.body:
            probe.hit = True
    tracer = k.tracer
    if tracer is not None and tracer.key == key and tracer.impl in (ORIG, impl):
        tracer.called = True


def do_trace(k: Kernel, step: Trace) -> int:
    """echo FUNC > set_ftrace_filter; echo function > current_tracer (test-ftrace.sh's
    trace_function).  The scenario loader checked the name; the function's module must
    be loaded, else the filter names nothing and the tracer would trace everything."""
    patch = k.scenario.patches_by_name().get(step.object)
    owner = step.object if step.object != VMLINUX else None
    if owner is not None and owner not in k.modules:
        raise ScenarioError(
            f"`trace {step.label}`", f"{owner} is not loaded: its functions cannot be traced"
        )
    if patch is None:
        k.tracer = Tracer(step.label, (step.object, step.func), ORIG)
    else:
        obj = next(o.name for o in patch.objects if step.func in o.funcs)
        k.tracer = Tracer(step.label, (obj, step.func), patch.name)
    return 0


def do_untrace(k: Kernel) -> int:
    """Stop tracing; the runner logs whether the function showed up in the trace."""
    tracer = k.tracer
    assert tracer is not None  # the loader pairs every untrace with a trace
    seen = "called" if tracer.called else "not called"
    k.userland(f"livepatch: trace {tracer.label}: {seen}")
    k.tracer = None
    return 0
