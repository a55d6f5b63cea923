"""Step strings (`load p replace=1`, `call vmlinux:cmdline_proc_show`) -> typed steps.

A step is one line a person could type into a guest shell, so scenario files read like
upstream's selftests.  `parse_steps` turns each into a frozen step type
(harness/scenario/step_types.py, whose `format_step` is the inverse), checking what can
be checked without running it: the verb, the arguments, that every module, patch,
target, object and function it names exists, and that parameter values parse the way
the kernel will parse them."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping

from harness.errors import ScenarioError
from harness.scenario.checks import SYMPOS_MAX, check_errno
from harness.scenario.kstrto import (
    KstrtoError,
    kstrtoint,
    parse_bool_param,
)
from harness.scenario.step_types import (
    NOWAIT,
    USAGE,
    Attach,
    Call,
    Check,
    Detach,
    Disable,
    Enable,
    Force,
    Kill,
    Load,
    Park,
    Release,
    SetParam,
    Spawn,
    Start,
    Step,
    Stop,
    SysctlFtrace,
    Trace,
    Trigger,
    Unload,
    Untrace,
    Wait,
    Watch,
)
from harness.scenario.traces import check_traces, traced_replacement
from harness.scenario.types import (
    VMLINUX,
    VMLINUX_FUNCS,
    BpfProgram,
    KernelModule,
    Module,
    PatchModule,
    Processes,
    TargetModule,
)

# A `wait P retries=N` lasts about N seconds (one retry a second).
MAX_WAIT_RETRIES = 40

# A function a trigger watches: a C identifier, or a compiler's clone of one
# (`foo.isra.0`, `foo.cold`), as kallsyms names it.
WATCHED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")

# Parameters every generated livepatch module has (see PatchModule).
PATCH_PARAMS = ("replace", "pre_patch_ret")


class _StepParser:
    """Parses the step strings of one scenario against its modules."""

    def __init__(
        self,
        targets: tuple[TargetModule, ...],
        patches: tuple[PatchModule, ...],
        processes: tuple[Processes, ...] = (),
        bpf: tuple[BpfProgram, ...] = (),
    ):
        self.processes = {p.name: p for p in processes}
        self.bpf = {p.name: p for p in bpf}
        modules: list[Module | KernelModule] = [*targets, *patches]
        target_names = {t.name for t in targets}
        for patch in patches:
            for obj in patch.objects:
                if obj.name != VMLINUX and obj.name not in target_names:
                    modules.append(KernelModule(obj.name))  # a module of the kernel
        self.modules = {m.name: m for m in modules}
        # a patch whose file is not read yet: its functions are checked once it is
        self.deferred = any(not p.resolved for p in patches)
        self.targets = {t.name: t for t in targets}
        self.patches = {p.name: p for p in patches}
        self.verbs: dict[str, Callable[[str, list[str]], Step]] = {
            "load": self._load,
            "unload": self._unload,
            "enable": self._enable,
            "disable": self._disable,
            "force": self._force,
            "set": self._set,
            "park": self._park,
            "release": self._release,
            "start": self._start,
            "stop": self._stop,
            "spawn": self._spawn,
            "kill": self._kill,
            "sysctl": self._sysctl,
            "call": self._call,
            "wait": self._wait,
            "trigger": self._trigger,
            "check": self._check,
            "trace": self._trace,
            "untrace": self._untrace,
            "attach": self._attach,
            "detach": self._detach,
        }

    def parse(self, text: str, where: str) -> Step:
        words = text.split()
        if not words:
            raise ScenarioError(where, "empty step")
        if words[0] == "trigger":
            try:
                words = shlex.split(text)
            except ValueError as exc:
                raise ScenarioError(where, f"{exc} (usage: {USAGE['trigger']})") from None
        verb, args = words[0], words[1:]
        handler = self.verbs.get(verb)
        if handler is None:
            raise ScenarioError(where, f"unknown step {verb!r} (known: {', '.join(self.verbs)})")
        try:
            return handler(verb, args)
        except _BadStep as exc:
            raise ScenarioError(where, f"{exc} (usage: {USAGE[verb]})") from None

    # ---- arguments -------------------------------------------------------------------

    @staticmethod
    def _arity(verb: str, args: list[str], count: int) -> None:
        if len(args) != count:
            raise _BadStep(
                f"{verb} takes {count} argument{'s' if count != 1 else ''}, got {len(args)}"
            )

    def _module(self, name: str) -> Module | KernelModule:
        if name not in self.modules:
            raise _BadStep(f"unknown module {name!r}{_known(self.modules)}")
        return self.modules[name]

    def _patch(self, name: str) -> PatchModule:
        if name not in self.patches:
            raise _BadStep(
                f"{name!r} is not a livepatch module of this scenario{_known(self.patches)}"
            )
        return self.patches[name]

    def _blocker_target(self, name: str) -> TargetModule:
        if name not in self.targets:
            raise _BadStep(
                f"{name!r} is not a target module of this scenario{_known(self.targets)}"
            )
        target = self.targets[name]
        if target.blocker is None:
            raise _BadStep(f"target {name!r} has no blocker")
        return target

    def _param(self, module: Module | KernelModule, param: str, value: str) -> tuple[str, str]:
        """Check PARAM=VALUE against what the generated module declares (a module
        file's parameters are the kernel's to check)."""
        if not isinstance(module, KernelModule) and module.ko:
            return param, value
        if isinstance(module, KernelModule):
            raise _BadStep(f"{module.name} is a module of the kernel: it takes no parameters")
        if isinstance(module, PatchModule):
            if param not in PATCH_PARAMS:
                raise _BadStep(
                    f"{module.name} has no parameter {param!r} (it has: {', '.join(PATCH_PARAMS)})"
                )
            try:
                number = kstrtoint(value)
            except KstrtoError as exc:
                raise _BadStep(
                    f"{param} value {value!r}: kstrtoint would fail with -{exc.errno_name}"
                    f" ({exc}); an int is decimal, 0x hex or 0 octal, optionally signed"
                ) from None
            if param == "pre_patch_ret":
                try:
                    check_errno(number, param)
                except ScenarioError as exc:
                    raise _BadStep(f"{param}: {exc.message}") from None
            return param, value
        params = [m.param for m in (module.blocker, module.spinner) if m is not None]
        if param not in params:
            have = ", ".join(params) or "none"
            raise _BadStep(f"{module.name} has no parameter {param!r} (it has: {have})")
        if parse_bool_param(value) is None:
            raise _BadStep(f"{param} is a bool: Y or N (also y, n, 1, 0), got {value!r}")
        return param, value

    # ---- verbs -----------------------------------------------------------------------

    def _load(self, verb: str, args: list[str]) -> Step:
        nowait = NOWAIT in args
        args = [a for a in args if a != NOWAIT]
        if not args:
            raise _BadStep("load needs a module name")
        module = self._module(args[0])
        if nowait and not isinstance(module, PatchModule):
            raise _BadStep(f"{NOWAIT} only applies to livepatch modules")
        params: list[tuple[str, str]] = []
        for word in args[1:]:
            name, sep, value = word.partition("=")
            if not sep or not name or not value:
                raise _BadStep(f"module parameters are PARAM=VALUE, got {word!r}")
            if any(name == seen for seen, _ in params):
                raise _BadStep(f"parameter {name!r} given twice")
            params.append(self._param(module, name, value))
        return Load(module.name, tuple(params), nowait)

    def _unload(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        return Unload(self._module(args[0]).name)

    def _enable(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        return Enable(self._patch(args[0]).name)

    def _disable(self, verb: str, args: list[str]) -> Step:
        nowait = NOWAIT in args
        args = [a for a in args if a != NOWAIT]
        self._arity(verb, args, 1)
        return Disable(self._patch(args[0]).name, nowait)

    def _force(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        return Force(self._patch(args[0]).name)

    def _wait(self, verb: str, args: list[str]) -> Step:
        if len(args) == 2:
            key, sep, value = args[1].partition("=")
            if key != "retries" or not sep or not (value.isascii() and value.isdigit()):
                raise _BadStep(f"expected retries=N (a decimal count), got {args[1]!r}")
            if not 1 <= int(value) <= MAX_WAIT_RETRIES:
                raise _BadStep(f"retries must be 1..{MAX_WAIT_RETRIES}, got {value}")
            return Wait(self._patch(args[0]).name, int(value))
        self._arity(verb, args, 1)
        return Wait(self._patch(args[0]).name)

    def _set(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 3)
        module = self._module(args[0])
        param, value = self._param(module, args[1], args[2])
        return SetParam(module.name, param, value)

    def _park(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        target = self._blocker_target(args[0])
        if target.blocker is not None and target.blocker.timed:
            param = target.blocker.param
            raise _BadStep(f"{target.name}'s work parks only when it loads (its {param})")
        return Park(target.name)

    def _release(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        return Release(self._blocker_target(args[0]).name)

    def _spinner_target(self, verb: str, args: list[str]) -> str:
        self._arity(verb, args, 1)
        target = self.targets.get(args[0])
        if target is None:
            raise _BadStep(
                f"{args[0]!r} is not a target module of this scenario{_known(self.targets)}"
            )
        if target.spinner is None:
            raise _BadStep(f"target {target.name!r} has no spinner")
        return target.name

    def _start(self, verb: str, args: list[str]) -> Step:
        return Start(self._spinner_target(verb, args))

    def _stop(self, verb: str, args: list[str]) -> Step:
        return Stop(self._spinner_target(verb, args))

    def _named(self, verb: str, args: list[str], names: Mapping[str, object], what: str) -> str:
        """The one argument, which must name one of `names` (a table of the scenario)."""
        self._arity(verb, args, 1)
        if args[0] not in names:
            raise _BadStep(f"{args[0]!r} is not a {what} of this scenario{_known(names)}")
        return args[0]

    def _group(self, verb: str, args: list[str]) -> str:
        return self._named(verb, args, self.processes, "[[processes]] group")

    def _spawn(self, verb: str, args: list[str]) -> Step:
        return Spawn(self._group(verb, args))

    def _kill(self, verb: str, args: list[str]) -> Step:
        return Kill(self._group(verb, args))

    def _program(self, verb: str, args: list[str]) -> str:
        return self._named(verb, args, self.bpf, "[[bpf]] program")

    def _attach(self, verb: str, args: list[str]) -> Step:
        return Attach(self._program(verb, args))

    def _detach(self, verb: str, args: list[str]) -> Step:
        return Detach(self._program(verb, args))

    def _sysctl(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        key, sep, value = args[0].partition("=")
        if key not in ("ftrace_enabled", "kernel.ftrace_enabled") or not sep:
            raise _BadStep(f"only ftrace_enabled=N can be set, got {args[0]!r}")
        if value not in ("0", "1"):
            raise _BadStep(f"ftrace_enabled must be 0 or 1, got {value!r}")
        return SysctlFtrace(int(value))

    def _call(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        obj, sep, func = args[0].partition(":")
        if not sep or not obj or not func:
            raise _BadStep(f"expected OBJECT:FUNC, got {args[0]!r}")
        if obj == VMLINUX:
            known: tuple[str, ...] = tuple(VMLINUX_FUNCS)
        elif obj in self.targets:
            known = self.targets[obj].funcs
        else:
            raise _BadStep(
                f"{obj!r} is neither {VMLINUX!r} nor a target module{_known(self.targets)}"
            )
        if func not in known:
            raise _BadStep(f"{obj} has no function {func!r} (it has: {', '.join(known)})")
        return Call(obj, func)

    def _check(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        patch = self._patch(args[0])
        if not patch.check:
            raise _BadStep(f"{patch.name} has no `check` command")
        return Check(patch.name)

    def _trigger(self, verb: str, args: list[str]) -> Step:
        if len(args) < 2 or not args[0].strip():
            raise _BadStep("trigger needs a command and at least one OBJECT:FUNC it calls")
        watch: list[Watch] = []
        for word in args[1:]:
            key, sep, count = word.partition("=")
            found = self._watched(key)
            if sep and not (count.isdigit() and count.isascii()):
                raise _BadStep(f"{word!r}: the number of calls is a decimal count")
            found = Watch(found.object, found.func, int(count) if sep else None, found.sympos)
            if any(w.key == found.key for w in watch):
                raise _BadStep(f"{key} is watched twice")
            watch.append(found)
        return Trigger(args[0], tuple(watch))

    def _watched(self, key: str) -> Watch:
        """`OBJ:FUNC[,SYMPOS]`: any function of vmlinux, of a target module file or of a
        kernel module a patch names (its existence, and `sympos` against the number of
        its definitions, are checked with the profile's symbols: harness/symbols)."""
        obj, colon, rest = key.partition(":")
        func, comma, pos = rest.partition(",")
        if not colon or not obj:
            raise _BadStep(f"{key!r}: expected OBJECT:FUNC or OBJECT:FUNC,SYMPOS")
        if not WATCHED_NAME.fullmatch(func):
            raise _BadStep(f"{key!r}: {func!r} is not a function name")
        if comma and not (pos.isdigit() and pos.isascii() and 0 < int(pos) <= SYMPOS_MAX):
            raise _BadStep(f"{key!r}: the symbol position is a decimal from 1 to {SYMPOS_MAX}")
        target = self.targets.get(obj)
        if target is not None and not target.ko:
            raise _BadStep(f"{key}: a generated target's function is observed by `call`")
        if target is not None and target.funcs and func not in target.funcs:
            raise _BadStep(f"{obj} has no function {func!r} (it has: {', '.join(target.funcs)})")
        if obj != VMLINUX and obj not in self.modules and not self.deferred:
            raise _BadStep(
                f"{key!r}: {obj!r} is neither {VMLINUX!r}, a target module nor a module "
                "of the kernel a patch names"
            )
        if obj in self.patches:
            raise _BadStep(f"{key!r}: {obj} is a patch; watch the function it patches")
        return Watch(obj, func, sympos=int(pos) if comma else 0)

    def _trace(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 1)
        obj, sep, func = args[0].partition(":")
        if not sep or not obj or not func:
            raise _BadStep(f"expected OBJECT:FUNC or PATCH:FUNC, got {args[0]!r}")
        if obj in self.patches:
            if traced_replacement(self.patches[obj], func, set(self.targets)) is None:
                raise _BadStep(
                    f"{obj} has no replacement of {func!r} written in C (a function "
                    "of a target, one of " + ", ".join(VMLINUX_FUNCS) + ", or a body)"
                )
            return Trace(obj, func)
        self._call(verb, args)  # the same originals a call reaches
        return Trace(obj, func)

    def _untrace(self, verb: str, args: list[str]) -> Step:
        self._arity(verb, args, 0)
        return Untrace()


class _BadStep(Exception):
    """A step string is wrong; the parser adds where and the verb's usage."""


def _known(names: Mapping[str, object]) -> str:
    return f" (known: {', '.join(names)})" if names else ""


def parse_steps(
    texts: list[str],
    targets: tuple[TargetModule, ...],
    patches: tuple[PatchModule, ...],
    processes: tuple[Processes, ...] = (),
    bpf: tuple[BpfProgram, ...] = (),
) -> tuple[Step, ...]:
    """Parse a scenario's `steps` list; errors name `steps[i]`."""
    parser = _StepParser(targets, patches, processes, bpf)
    steps = tuple(parser.parse(text, f"steps[{i}]") for i, text in enumerate(texts))
    check_traces(steps)
    return steps
