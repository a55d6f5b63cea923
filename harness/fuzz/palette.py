"""The modules, actors and programs random histories are made of.

A history draws a *world*: a few patches from `PATCHES`, each a distinct design, and
a scene or two (`SCENES`: kprobe and spinner targets, `[[processes]]` groups, `[[bpf]]`
programs, each with what it meets), on top of the two base targets (blockers, a
shadow script).  The patches
cover the scenario language: a lone vmlinux patch, patches that share functions
(func stacks), module objects only, no callbacks, cumulative ones with and without
klp_states (nops, dynamic objects, compatibility refusals), a shadow-variable script,
shadow fields handed over by a cumulative patch, klp relocations, a sympos the
target cannot resolve, real vmlinux functions (the default replacement of a system
call, a body, a name defined twice chosen by sympos), a module of the kernel as an
object, a `check` command, spinner threads' functions, a spinner bound to CPU 1
(a two-CPU guest), and the kernel's own callbacks demo (module files).  Every module
has a name of its own, so the whole palette is built once (cached per module) and
installed in every guest: the next history's guest can be prepared while one runs,
whatever world it draws, and a world needs no build.

This module is the data; harness/fuzz/worlds.py makes worlds of it and the steps a
history over one may take.

Order matters to the shrinker: hypothesis prefers earlier choices, so the simplest
patches and extras come first and a minimal history names the simplest that show it.
"""

from __future__ import annotations

from pathlib import Path

from harness.model.fuzz import PATCHES as MODEL_PATCHES
from harness.model.fuzz import TARGETS as BASE_TARGETS
from harness.scenario.types import (
    VMLINUX,
    BpfProgram,
    Callback,
    FuncBody,
    FuncSpec,
    Kprobe,
    PatchModule,
    PatchObject,
    Processes,
    Scenario,
    ShadowOp,
    ShadowOpKind,
    Spinner,
    TargetModule,
)

ALL = frozenset(Callback)
NONE: frozenset[Callback] = frozenset()
_MODEL = {p.name: p for p in MODEL_PATCHES}  # the model's own random-step set
PALETTE_FILE = "fuzz-palette.toml"

VERSION_BODY = """\
static int version_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "p_ver\\n");
	return 0;
}
"""

# ---- targets -----------------------------------------------------------------------

SPINNER_TARGETS = (
    # a kthread calling l1 in a loop, reporting RCU Tasks quiescent states: switches at
    # once, and every unpatch may go on while it runs
    TargetModule("t_loop", ("l1",), spinner=Spinner("l1", rcu_tasks_qs=True)),
    # a kthread spinning inside s1: blocks a transition of s1 until stopped or forced,
    # and no handler may be removed while it runs (synchronize_rcu_tasks)
    TargetModule("t_spin", ("s1",), spinner=Spinner("s1", inside=True)),
    # a kthread bound to CPU 1 of a two-CPU guest, calling c1 in a loop
    TargetModule("t_pin", ("c1",), spinner=Spinner("c1", rcu_tasks_qs=True, cpu=1)),
)
KPROBE_TARGETS = (
    # upstream's test_klp_kprobe with a post_handler: IPMODIFY, conflicts with livepatch
    TargetModule(
        "kp_post", log_init_exit=False, kprobe=Kprobe("cmdline_proc_show", post_handler=True)
    ),
    # without one: shares the call site
    TargetModule(
        "kp_plain", log_init_exit=False, kprobe=Kprobe("meminfo_proc_show", post_handler=False)
    ),
    # a kretprobe: its entry kprobe has no post_handler
    TargetModule(
        "kretp",
        log_init_exit=False,
        kprobe=Kprobe("cmdline_proc_show", post_handler=False, kretprobe=True),
    ),
    # an int3 kprobe in the body: only the original's body reaches it
    TargetModule(
        "kp_body",
        log_init_exit=False,
        kprobe=Kprobe("cmdline_proc_show", post_handler=False, body=True),
    ),
)
# The kernel's own callbacks demo (samples/livepatch, built from the profile's source by
# harness/upstream/samples): module files, declared here as reading them gives them
# (objects, funcs, callbacks) and checked against each profile's files before any
# history (harness/fuzz/prepare.py, SAMPLES_TEXT).  The busy module is an object of
# the demo that is never loaded: its work logs on a timer of its own.
SAMPLE_TARGETS = (
    TargetModule("livepatch_callbacks_mod", ko="samples:livepatch-callbacks-mod"),
    TargetModule(
        "livepatch_callbacks_busymod",
        log_init_exit=False,
        ko="samples:livepatch-callbacks-busymod",
    ),
)
NOT_LOADED = ("livepatch_callbacks_busymod",)
TARGETS = (*BASE_TARGETS, *KPROBE_TARGETS, *SPINNER_TARGETS, *SAMPLE_TARGETS)
BASE_TARGET_NAMES = tuple(t.name for t in BASE_TARGETS)
PINNED = "t_pin"  # its world runs on a two-CPU guest
DUMMY = "dummy"  # a module of the kernel (drivers/net/dummy.ko), p_dummy's object

# ---- patches -----------------------------------------------------------------------

PATCHES = (
    # one vmlinux function, every callback
    PatchModule("p_cmd", (PatchObject(VMLINUX, ("cmdline_proc_show",), ALL),)),
    # vmlinux and a module object, a klp_state
    _MODEL["p_one"],
    # cumulative with a state: nops for whatever it does not patch
    _MODEL["p_cum"],
    # module objects only, some callbacks, a shadow script
    _MODEL["p_two"],
    # two states, one the cumulative patches lack
    _MODEL["p_three"],
    # no callbacks at all; a shadow script of its own objects (alloc, get, free with a
    # destructor; free_all with one finds nothing): new objects each load, so it never
    # meets an earlier instance's variables
    PatchModule(
        "p_mem",
        (
            PatchObject(VMLINUX, ("meminfo_proc_show",), NONE),
            PatchObject("t_alpha", ("f1",), NONE),
        ),
        shadow=(
            ShadowOp(ShadowOpKind.GET, 2, 1),
            ShadowOp(ShadowOpKind.ALLOC, 2, 1, 1),
            ShadowOp(ShadowOpKind.GET_OR_ALLOC, 2, 1, 1),
            ShadowOp(ShadowOpKind.FREE, 2, 1, dtor=True),
            ShadowOp(ShadowOpKind.FREE_ALL, 3, dtor=True),
        ),
    ),
    # cumulative without states, callbacks on a module object
    PatchModule(
        "p_rep",
        (
            PatchObject(VMLINUX, ("cmdline_proc_show",), NONE),
            PatchObject("t_beta", ("g1",), frozenset({Callback.PRE_PATCH, Callback.POST_PATCH})),
        ),
        replace=True,
    ),
    # a shadow field on t_alpha's f1 (livepatch-shadow-fix1)
    PatchModule("p_fld", (PatchObject("t_alpha", ("f1",), NONE, shadow_field=0x10),)),
    # cumulative, taking the field over and adding one for f2 (livepatch-shadow-fix2)
    PatchModule(
        "p_fld2",
        (
            PatchObject(
                "t_alpha", ("f1", "f2"), frozenset({Callback.POST_PATCH}), shadow_field=0x10
            ),
        ),
        replace=True,
    ),
    # a klp relocation into t_beta (kpatch-build's output): written at each coming
    PatchModule("p_rel", (PatchObject("t_beta", ("g1",), ALL, klp_relocs=True),)),
    # the spinners' functions and t_alpha's blocker function
    PatchModule(
        "p_spin",
        (
            PatchObject("t_alpha", ("f1",), NONE),
            PatchObject("t_loop", ("l1",), NONE),
            PatchObject("t_spin", ("s1",), ALL),
        ),
    ),
    # the function of the spinner bound to CPU 1
    PatchModule("p_pin", (PatchObject("t_pin", ("c1",), NONE),)),
    # getpid(2): the default replacement of a real function (counts, then the original)
    PatchModule("p_getpid", (PatchObject(VMLINUX, ("__do_sys_getpid",), NONE),)),
    # a body of its own, and a name vmlinux defines twice, chosen by sympos
    PatchModule(
        "p_ver",
        (
            PatchObject(
                VMLINUX,
                ("version_proc_show", "elf_load"),
                NONE,
                specs=(
                    FuncSpec(
                        "version_proc_show",
                        body=FuncBody(VERSION_BODY, PALETTE_FILE, 1, ("linux/seq_file.h",)),
                    ),
                    FuncSpec("elf_load", sympos=1),
                ),
            ),
        ),
    ),
    # a module of the kernel as its object, loaded and unloaded by the history
    PatchModule("p_dummy", (PatchObject(DUMMY, ("dummy_get_stats64",), ALL),)),
    # a check command in kpatch's convention, passing while its code runs
    PatchModule(
        "p_chk",
        (PatchObject(VMLINUX, ("meminfo_proc_show",), NONE),),
        check="grep -q 'p_chk: this has been live patched' /proc/meminfo",
    ),
    # t_alpha defines f2 once: sympos 2 fails to resolve (EINVAL at either load)
    PatchModule(
        "p_sym", (PatchObject("t_alpha", ("f2",), NONE, specs=(FuncSpec("f2", sympos=2),)),)
    ),
    # the kernel's livepatch-callbacks-demo: every callback on vmlinux and on its two
    # modules, upstream's callback_info() lines (a module file: no parameters)
    PatchModule(
        "livepatch_callbacks_demo",
        (
            PatchObject(VMLINUX, (), ALL),
            PatchObject("livepatch_callbacks_mod", (), ALL),
            PatchObject(
                "livepatch_callbacks_busymod",
                ("busymod_work_func",),
                ALL,
                specs=(FuncSpec("busymod_work_func", new_func="patched_work_func"),),
            ),
        ),
        ko="samples:livepatch-callbacks-demo",
    ),
)
# What reading the samples' files for a profile must give (SAMPLE_TARGETS, the demo).
SAMPLES_TEXT = """\
description = "The kernel's callbacks demo, as the fuzzing palette declares it."
steps = ["load livepatch_callbacks_demo"]

[[target]]
ko = "samples:livepatch-callbacks-mod"
log_init_exit = true

[[target]]
ko = "samples:livepatch-callbacks-busymod"

[[patch]]
ko = "samples:livepatch-callbacks-demo"
callback_lines = true
"""

PROCESSES = (
    Processes("getpid", 2),  # upstream's test-syscall: getpid() in a loop
    Processes("sleeper", 1, "sleep"),  # asleep in clock_nanosleep()
)
BPF = (
    BpfProgram("cmdline_entry", "fentry", "cmdline_proc_show"),
    BpfProgram("cmdline_exit", "fexit", "cmdline_proc_show"),
    BpfProgram("nanosleep_exit", "fexit", "hrtimer_nanosleep"),
    BpfProgram("nanosleep_entry", "fentry", "hrtimer_nanosleep"),
)

PATCH_NAMES = tuple(p.name for p in PATCHES)
TARGET_NAMES = tuple(t.name for t in TARGETS)
GROUP_NAMES = tuple(g.name for g in PROCESSES)
PROGRAM_NAMES = tuple(p.name for p in BPF)
# Extras come in scenes whose parts meet each other: kprobes with and without IPMODIFY
# on the patched vmlinux functions, spinners and the patch of their functions, a
# spinner on CPU 1 and its patch, processes calling getpid and its patch, a sleeper
# and the BPF programs of the function it sleeps in, fentry and fexit on a function a
# patch replaces.
SCENES = {
    "kprobes": ("kp_post", "kretp"),
    "kprobes_plain": ("kp_plain", "kp_body"),
    "spinners": ("t_loop", "t_spin", "p_spin"),
    "pinned": (PINNED, "p_pin"),
    "syscall": ("getpid", "p_getpid"),
    "sleepers": ("sleeper", "nanosleep_exit", "nanosleep_entry"),
    # the patch is part of the scene: fentry then fexit on a livepatched function is
    # where 6.1.192's half backport WARNs (harness/model/kernel/bpf.py, breaks_ops)
    "bpf_cmdline": ("cmdline_entry", "cmdline_exit", "p_cmd"),
}
EXTRAS = tuple(SCENES)  # what a world may draw besides patches (and the base targets)
ORDER = {
    name: i
    for i, name in enumerate((*PATCH_NAMES, *TARGET_NAMES, DUMMY, *GROUP_NAMES, *PROGRAM_NAMES))
}
# A variant of an area is searched for with that area in every world (directed, as
# a focused syzkaller run): what the variant changes is then met in most histories.
FOCUS = {
    "fork-initial-state": ("spinners", "sleepers"),
    "kprobe-post-handler-shares": ("kprobes",),
    "bpf-trampoline-reliable": ("sleepers",),
    "shadow-field-not-handed-over": ("p_fld", "p_fld2"),
    "klp-relocs-kept": ("p_rel",),
    "klp-relocs-cleared": ("p_rel",),
}
# The worlds of wave 1 (before the palette covered the scenario language): its seven
# generated patches over the base targets, no scene (`SearchConfig.palette`).
WAVE1 = ("p_cmd", "p_one", "p_cum", "p_two", "p_three", "p_mem", "p_rep")
MAX_PATCHES = 4
MAX_EXTRAS = 2

PALETTE = Scenario(
    path=Path(PALETTE_FILE),
    description="Every module, actor and program random histories are made of.",
    steps=(),
    targets=TARGETS,
    patches=PATCHES,
    processes=PROCESSES,
    bpf=BPF,
    cpus=2,
)

PATCH_BY_NAME = {p.name: p for p in PATCHES}
TARGET_BY_NAME = {t.name: t for t in TARGETS}

# Commands trigger steps run, and the functions of each real patch they watch (elf_load
# by its position: vmlinux defines it twice, the native ELF loader first).
TRIGGERS = {
    "p_getpid": ("trigger 'busybox sh -c true' vmlinux:__do_sys_getpid",),
    "p_ver": (
        "trigger 'cat /proc/version' vmlinux:version_proc_show=1",
        "trigger 'busybox true' vmlinux:elf_load,1",
    ),
    "p_dummy": (f"trigger 'cat /proc/net/dev' {DUMMY}:dummy_get_stats64",),
}
# Replacements written in C (a function tracer can trace them), by patch.
TRACEABLE = {
    "p_cmd": "cmdline_proc_show",
    "p_one": "cmdline_proc_show",
    "p_rep": "cmdline_proc_show",
    "p_ver": "version_proc_show",
    "p_chk": "meminfo_proc_show",
}
# The patch that names each function a trigger watches (a trigger needs it).
WATCHED = {
    (VMLINUX, "__do_sys_getpid"): "p_getpid",
    (VMLINUX, "version_proc_show"): "p_ver",
    (VMLINUX, "elf_load"): "p_ver",
    (DUMMY, "dummy_get_stats64"): "p_dummy",
}
ORIGINAL_TRACES = ("vmlinux:cmdline_proc_show", "vmlinux:meminfo_proc_show", "t_alpha:f1")
