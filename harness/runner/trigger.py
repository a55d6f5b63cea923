"""`trigger` steps: run a command and observe which implementations of the watched
functions ran, for any function and without relying on what it prints.

* A patch's implementation: every generated replacement counts its calls
  (`/sys/kernel/debug/klp_harness_calls/<patch>`, lines `<object>:<func> <calls>`).
* The original: a kprobe *inside* its body, on the first instruction after the ftrace
  call site (`func+5`, or `func+9` behind an ENDBR64; the kernel refuses an offset
  that is not an instruction boundary, so `+5` is tried first).  A redirected call
  never gets there: livepatch changes the return address at the ftrace call site.
  It is an int3 (or optimized jump) probe, not an ftrace one, so it neither shares
  livepatch's ftrace ops nor depends on `kernel.ftrace_enabled`.  Its hits are read
  from `kprobe_profile`.  Its event is enabled in a trace instance of the harness's
  own whose buffer stays off (TRIGGER_TRACE), so a probe costs a counter increment
  and records nothing, and the top-level buffer, which a `trace` step turns on and
  reads, never holds its events: the first reason was cost, the second was found by
  the fuzzer (processes calling a watched getpid filled that buffer while a `trace`
  step had it on, and `untrace`'s line-by-line read of it took minutes).

* A module file's replacement (a patch given by `ko`, which counts nothing): a kprobe
  on its replacement function's entry (`PATCH:NEW_FUNC`), found by name in the
  file's `klp_func.new_func` (harness.modules.elf); registered by a trigger step
  once the patch module is loaded.  At the entry it is an ftrace-based probe (its
  own ftrace site, which livepatch does not use: livepatch hooks the original's), so
  it is never optimized: on debian-6.12 preparing an optimized probe on the last
  function of a module's text decodes past the end of its page and oopses
  (insn_get_modrm from can_optimize, seen with livepatch-sample.ko).

The probes are registered in the first step's round trip; a trigger step reads every
counter before and after the command (shell builtins only), in its own round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.model.trigger import ran_text
from harness.runner.protocol import ERR_FILE
from harness.scenario.step_types import Trigger, Watch
from harness.scenario.types import VMLINUX, Scenario
from harness.symbols.data import module_key

TRACEFS = "/sys/kernel/tracing"
TRIGGER_TRACE = f"{TRACEFS}/instances/klp-trigger"  # its buffer is never on
CALLS_DIR = "/sys/kernel/debug/klp_harness_calls"
PROBE = "klp_orig_"
NEW_PROBE = "klp_new_"


def replacements(scenario: Scenario) -> list[tuple[str, str, str]]:
    """(patch, watched OBJ:FUNC, replacement symbol) of every module file's
    replacement of a watched function."""
    keys = {w.key for w in watched(scenario)}
    found = []
    for patch in scenario.patches:
        if not patch.ko:
            continue
        for obj in patch.objects:
            for func in obj.funcs:
                spec = obj.spec(func)
                key = Watch(obj.name, func, sympos=spec.sympos).key
                if key in keys and spec.new_func:
                    found.append((patch.name, key, spec.new_func))
    return found


def watched(scenario: Scenario) -> list[Watch]:
    """Every function some trigger step watches (by key, the count left out), in
    first-seen order."""
    seen: dict[str, Watch] = {}
    for step in scenario.steps:
        if isinstance(step, Trigger):
            for w in step.watch:
                seen.setdefault(w.key, Watch(w.object, w.func, sympos=w.sympos))
    return list(seen.values())


def _address(watch: Watch) -> str:
    """Set `__klp_at` to the address of the watched function's SYMPOS-th definition in
    its object, counted in /proc/kallsyms' order, which is the order livepatch counts
    them in (kallsyms_on_each_symbol and module_kallsyms_on_each_symbol walk the same
    tables /proc/kallsyms prints): a name defined several times has no unique probe
    point by name (trace_kprobe refuses it, -EADDRNOTAVAIL)."""
    module = "" if watch.object == VMLINUX else module_key(watch.object)
    match = '$3 == n && ((m == "" && NF == 3) || $4 == "[" m "]") && ++c == p'
    return (
        f"__klp_at=$(awk -v n={watch.func} -v m={module} -v p={max(watch.sympos, 1)} "
        f"'{match} {{ print $1; exit }}' /proc/kallsyms); [ -n \"$__klp_at\" ]"
    )


def _probe(i: int, watch: Watch, prefix: str = PROBE, offsets: tuple[int, ...] = (5, 9)) -> str:
    """Register and enable probe i on the watched function's body (a module's: `MOD:FUNC`;
    it must be loaded for the offset to be checked, so module probes are registered by
    the trigger steps, once the event does not exist yet; the kernel re-arms them when
    the module loads again).  A function chosen by `sympos` is probed at its address."""
    events = f"{TRACEFS}/kprobe_events"
    if watch.sympos:
        find = f"{_address(watch)} && "
        wheres = [f"$(printf 0x%x $((0x$__klp_at + {off})))" for off in offsets]
    else:
        find = ""
        name = watch.func if watch.object == VMLINUX else f"{watch.object}:{watch.func}"
        wheres = [f"{name}+{off}" for off in offsets]
    add = " || ".join(f'echo "p:{prefix}{i} {where}" >> {events}' for where in wheres)
    enable = f"echo 1 > {TRIGGER_TRACE}/events/kprobes/{prefix}{i}/enable"
    return f"{{ {find}{{ {add}; }}; }} 2>/dev/null && {enable} 2>/dev/null"


def setup_script(funcs: Sequence[Watch]) -> str:
    """Make the probes' trace instance, its buffer off; register the probes of vmlinux
    functions."""
    if not funcs:
        return ""
    parts = [f"mkdir -p {TRIGGER_TRACE}", f"echo 0 > {TRIGGER_TRACE}/tracing_on"]
    parts += [_probe(i, watch) for i, watch in enumerate(funcs) if watch.object == VMLINUX]
    return "; ".join(parts)


_COUNTS = (
    "__klp_counts() { "
    f'while read -r __n __h __m; do echo "$1 k $__n $__h"; done < {TRACEFS}/kprobe_profile; '
    f'for __f in {CALLS_DIR}/*; do [ -f "$__f" ] || continue; '
    'while read -r __k __c; do echo "$1 c ${__f##*/} $__k $__c"; done < "$__f"; done; }'
)


def trigger_script(
    step: Trigger,
    funcs: Sequence[Watch] = (),
    replaced: Sequence[tuple[str, str, str]] = (),
) -> str:
    """Module probes not registered yet, counters, the command (passed as data: see
    `command_data`; its own stdout dropped, stderr kept for the report), counters
    again; the exit status is the command's."""
    keys = {w.key for w in step.watch}
    # Only once the module is loaded: a probe on a module not loaded yet is accepted
    # unchecked since 6.12, then fails at the load if +5 is inside an instruction
    # (trace_kprobe: "Failed to re-register probe", -EILSEQ).  Not loaded, nothing of
    # it runs: no probe is needed.
    probes = [
        f"[ -d {TRACEFS}/events/kprobes/{PROBE}{i} ] || "
        f"[ ! -d /sys/module/{module_key(watch.object)} ] || {{ {_probe(i, watch)}; }}; "
        for i, watch in enumerate(funcs)
        if watch.object != VMLINUX and watch.key in keys
    ]
    # The same for a module file's replacement, in its patch module.
    probes += [
        f"[ -d {TRACEFS}/events/kprobes/{NEW_PROBE}{i} ] || [ ! -d /sys/module/{patch} ] || "
        f"{{ {_probe(i, Watch(patch, new_func), NEW_PROBE, (0,))}; }}; "
        for i, (patch, key, new_func) in enumerate(replaced)
        if key in keys
    ]
    return (
        "".join(probes) + f"{_COUNTS}; {command_data(step.command)}; echo @@trigger; "
        f"__klp_counts B; {RUN_COMMAND} </dev/null >/dev/null 2>{ERR_FILE}; __rc=$?; "
        "__klp_counts A"
    )


# The scenario's command is data, never part of the step's shell text: its bytes are
# hex escapes that bash's printf builtin turns back into a string (no process, and
# nothing of the command is parsed while the step's script is), which a subshell then
# evaluates on its own.  An unbalanced `)` or a `; ... ; (` is the command's own
# syntax error (exit 2, bash's message on its stderr), confined to that subshell.
COMMAND_VAR = "__klp_cmd"
RUN_COMMAND = f'( eval "${COMMAND_VAR}" )'


def command_data(command: str) -> str:
    """Set COMMAND_VAR to `command` in the guest's bash, from hex escapes only."""
    escaped = "".join(f"\\x{byte:02x}" for byte in command.encode())
    return f"printf -v {COMMAND_VAR} %b '{escaped}'"


def failed(index: int, status: int, stderr: str, lines: int = 10) -> str:
    """The report's line for step `index`'s trigger command that exited `status`,
    with the end of its stderr."""
    tail = [line for line in stderr.splitlines() if line.strip()][-lines:]
    said = ": " + " | ".join(tail) if tail else " (nothing on stderr)"
    return f"step {index + 1}: the trigger's command exited with status {status}{said}"


def parse_ran(
    out: str,
    step: Trigger,
    funcs: Sequence[Watch],
    replaced: Sequence[tuple[str, str, str]] = (),
) -> dict[str, str]:
    """Per watched function: who ran (counter deltas), and the number of calls when the
    step asks for it: the larger of the patches' total and the original's count (a
    default replacement counts one call in both)."""
    before: dict[tuple[str, ...], int] = {}
    after: dict[tuple[str, ...], int] = {}
    for line in out.splitlines():
        words = line.split()
        try:
            value = int(words[-1])
        except (ValueError, IndexError):
            continue
        table = before if words[0] == "B" else after
        table[tuple(words[1:-1])] = value
    probes = {f"{PROBE}{i}": watch.key for i, watch in enumerate(funcs)}
    new = {f"{NEW_PROBE}{i}": (patch, key) for i, (patch, key, _f) in enumerate(replaced)}
    ran: dict[str, str] = {}
    for w in step.watch:
        patches: dict[str, int] = {}
        orig = 0
        for key, value in after.items():
            delta = value - before.get(key, 0)
            if delta <= 0:
                continue
            if key[0] == "k" and probes.get(key[1]) == w.key:
                orig += delta
            elif key[0] == "k" and key[1] in new and new[key[1]][1] == w.key:
                patch = new[key[1]][0]
                patches[patch] = patches.get(patch, 0) + delta
            elif key[0] == "c" and len(key) == 3 and key[2] == w.key:
                patches[key[1]] = patches.get(key[1], 0) + delta
        impls = [*patches, *(["orig"] if orig else [])]
        count = max(sum(patches.values()), orig)
        ran[w.key] = ran_text(impls, None if w.count is None else count)
    return ran
