"""The steps of a scenario, one frozen dataclass each, `Step`, their union, and
`format_step`, a step's canonical text: what a scenario does, beside `types.py`'s
modules (what it loads).  steps.py parses the text back."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

NOWAIT = "--nowait"

# How each step is written (parse errors show it).
USAGE = {
    "load": "load MODULE [PARAM=VALUE ...] [--nowait]",
    "unload": "unload MODULE",
    "enable": "enable PATCH",
    "disable": "disable PATCH [--nowait]",
    "force": "force PATCH",
    "set": "set MODULE PARAM VALUE",
    "park": "park TARGET",
    "release": "release TARGET",
    "start": "start TARGET",
    "stop": "stop TARGET",
    "spawn": "spawn PROCESSES",
    "kill": "kill PROCESSES",
    "sysctl": "sysctl ftrace_enabled=0|1",
    "call": "call OBJECT:FUNC",
    "wait": "wait PATCH [retries=N]",
    "trigger": "trigger 'COMMAND' OBJECT:FUNC[=CALLS] ...",
    "check": "check PATCH",
    "trace": "trace OBJECT:FUNC | trace PATCH:FUNC",
    "untrace": "untrace",
    "attach": "attach PROGRAM",
    "detach": "detach PROGRAM",
}


@dataclass(frozen=True)
class Load:
    """`modprobe MODULE [param=value ...]`; for a patch, wait for the transition to
    settle unless `nowait` (upstream's load_lp vs load_lp_nowait)."""

    module: str
    params: tuple[tuple[str, str], ...] = ()
    nowait: bool = False


@dataclass(frozen=True)
class Unload:
    """`rmmod MODULE`."""

    module: str


@dataclass(frozen=True)
class Enable:
    """`echo 1 > /sys/kernel/livepatch/PATCH/enabled`."""

    patch: str


@dataclass(frozen=True)
class Disable:
    """`echo 0 > /sys/kernel/livepatch/PATCH/enabled`; waits for the transition to settle
    unless `nowait`."""

    patch: str
    nowait: bool = False


@dataclass(frozen=True)
class Force:
    """`echo 1 > /sys/kernel/livepatch/PATCH/force`."""

    patch: str


@dataclass(frozen=True)
class SetParam:
    """`echo VALUE > /sys/module/MODULE/parameters/PARAM`."""

    module: str
    param: str
    value: str


@dataclass(frozen=True)
class Park:
    """Park the blocker work of TARGET inside its blocker function (current impl)."""

    target: str


@dataclass(frozen=True)
class Release:
    """Let the parked blocker work of TARGET return."""

    target: str


@dataclass(frozen=True)
class Start:
    """Start the spinner kernel thread of TARGET."""

    target: str


@dataclass(frozen=True)
class Stop:
    """Stop the spinner kernel thread of TARGET (kthread_stop: it has returned from its
    function and exited when the write returns)."""

    target: str


@dataclass(frozen=True)
class Spawn:
    """Start the processes of NAME (a `[[processes]]` group)."""

    name: str


@dataclass(frozen=True)
class Kill:
    """Kill the processes of NAME and wait until they are gone."""

    name: str


@dataclass(frozen=True)
class SysctlFtrace:
    """`sysctl kernel.ftrace_enabled=VALUE`."""

    value: int


@dataclass(frozen=True)
class Call:
    """Call OBJECT:FUNC and log the result to the kernel log the way upstream's
    `grep 'live patched' /proc/cmdline > /dev/kmsg` does: a patched implementation
    logs `<patch>: this has been live patched`, the original logs nothing."""

    object: str
    func: str


@dataclass(frozen=True)
class Watch:
    """A function a `trigger` step expects its command to call: the record says which
    implementation(s) ran (`count` set: and exactly how often).  `sympos` picks one of
    several functions of that name in the object, counted as livepatch counts them
    (klp_find_object_symbol: kallsyms order; 0 and 1 both name the first)."""

    object: str
    func: str
    count: int | None = None
    sympos: int = 0

    @property
    def key(self) -> str:
        """`OBJ:FUNC`, or `OBJ:FUNC,SYMPOS` for a later occurrence than the first."""
        at = f",{self.sympos}" if self.sympos > 1 else ""
        return f"{self.object}:{self.func}{at}"


@dataclass(frozen=True)
class Trigger:
    """Run COMMAND in the guest (a shell command line) and report, per watched
    function, which implementation(s) ran while it did: a patch's (its replacement's
    call counter) and/or the original (an entry counter in the original's body)."""

    command: str
    watch: tuple[Watch, ...]


@dataclass(frozen=True)
class Check:
    """Run PATCH's `check` command in the guest; the record says whether it passed
    (harness/model/check.py predicts it)."""

    patch: str


@dataclass(frozen=True)
class Trace:
    """Start ftrace's function tracer on one function, as upstream's test-ftrace.sh
    `trace_function` does: OBJECT:FUNC is the original (`vmlinux` or a target), or
    PATCH:FUNC that patch's replacement of FUNC.  `untrace` says whether it was called."""

    object: str
    func: str

    @property
    def label(self) -> str:
        return f"{self.object}:{self.func}"


@dataclass(frozen=True)
class Untrace:
    """Stop the function tracer, log whether the traced function appeared in the trace
    (`livepatch: trace OBJ:FUNC: called` / `: not called`) and clear it."""


@dataclass(frozen=True)
class Attach:
    """Attach the BPF program NAME (a `[[bpf]]` table) to its function."""

    name: str


@dataclass(frozen=True)
class Detach:
    """Detach the BPF program NAME."""

    name: str


@dataclass(frozen=True)
class Wait:
    """Wait until PATCH's transition settles (after a `nowait` load or disable); with
    `retries`, until the kernel has retried it that many times since it (re)started
    (or it settled): a blocked transition's retries are the kernel's clock."""

    patch: str
    retries: int | None = None


Step = (
    Load
    | Unload
    | Enable
    | Disable
    | Force
    | SetParam
    | Park
    | Release
    | Start
    | Stop
    | Spawn
    | Kill
    | SysctlFtrace
    | Call
    | Trigger
    | Check
    | Trace
    | Untrace
    | Wait
    | Attach
    | Detach
)


def format_step(step: Step) -> str:
    """The canonical text of a step (what records and reports show)."""
    match step:
        case Load(module=m, params=params, nowait=nowait):
            words = [m, *(f"{k}={v}" for k, v in params)] + ([NOWAIT] if nowait else [])
            return "load " + " ".join(words)
        case Unload(module=m):
            return f"unload {m}"
        case Enable(patch=p):
            return f"enable {p}"
        case Disable(patch=p, nowait=nowait):
            return f"disable {p}" + (f" {NOWAIT}" if nowait else "")
        case Force(patch=p):
            return f"force {p}"
        case SetParam(module=m, param=p, value=v):
            return f"set {m} {p} {v}"
        case Park(target=t):
            return f"park {t}"
        case Release(target=t):
            return f"release {t}"
        case Start(target=t):
            return f"start {t}"
        case Stop(target=t):
            return f"stop {t}"
        case Spawn(name=n):
            return f"spawn {n}"
        case Kill(name=n):
            return f"kill {n}"
        case Attach(name=n):
            return f"attach {n}"
        case Detach(name=n):
            return f"detach {n}"
        case SysctlFtrace(value=v):
            return f"sysctl ftrace_enabled={v}"
        case Call(object=o, func=f):
            return f"call {o}:{f}"
        case Wait(patch=p, retries=n):
            return f"wait {p}" + ("" if n is None else f" retries={n}")
        case Trace(object=o, func=f):
            return f"trace {o}:{f}"
        case Untrace():
            return "untrace"
        case Check(patch=p):
            return f"check {p}"
        case Trigger(command=c, watch=watch):
            words = [_watch_text(w) for w in watch]
            return " ".join(["trigger", shlex.quote(c), *words])
    raise AssertionError(f"unknown step {step!r}")


def _watch_text(watch: Watch) -> str:
    """A watched function as a step names it (`OBJ:FUNC[,SYMPOS][=N]`)."""
    at = f",{watch.sympos}" if watch.sympos else ""
    count = "" if watch.count is None else f"={watch.count}"
    return f"{watch.object}:{watch.func}{at}{count}"
