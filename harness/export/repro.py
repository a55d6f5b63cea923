"""`klp-harness export repro`: a scenario as a standalone reproducer, for a machine
with no Python and no harness.

    <module>.c, Kbuild   the modules (harness/export/modules.py)
    Makefile             `make` builds them against /lib/modules/$(uname -r)/build,
                         or KDIR=; and klp-bpf when the scenario attaches BPF programs
    klp-bpf.c            (then) a BPF fentry/fexit loader with no library
    expected-<series>    what each step should do on that kernel series, the
                         reference model's prediction
    run.sh               POSIX sh: runs the steps, prints each step's expected and
                         observed result, exits 1 at the first difference (or, with
                         -k, after the last step), 0 when every step was as expected

A step's result is what a shell sees: `ok`, or `fails` (`fails: <insmod's message>`
for a load); then the livepatches and their transition once the step settled, what a
read of each patched function prints first (`(original)` for the machine's own
/proc/cmdline or /proc/meminfo), the kernel's log lines (livepatch's and the
modules'), and a kernel warning (`report:`).  A load of a module that is loaded
already leaves it alone, as modprobe does.  run.sh picks the expectation of the
running kernel's series, or of the newest series it has that is not newer.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.export.expect import Expect
from harness.export.exportable import Kind, check_exportable
from harness.export.modules import kbuild, render_sources
from harness.export.plan import PlannedStep, expected_read, plan, read_file
from harness.export.transcript import INSMOD_MESSAGES
from harness.files import atomic_write
from harness.model.profiles import PROFILES
from harness.scenario.step_types import (
    Attach,
    Call,
    Detach,
    Disable,
    Enable,
    Force,
    Load,
    Park,
    Release,
    SetParam,
    Step,
    SysctlFtrace,
    Unload,
    Wait,
    format_step,
)
from harness.scenario.types import PatchModule, Scenario, TargetModule

BPF_LOADER = Path(__file__).resolve().parents[2] / "images" / "klp-bpf.c"
ORIGINAL = "(original)"

MAKEFILE = """\
# SPDX-License-Identifier: GPL-2.0
# The reproducer's modules, against the running kernel's build tree or KDIR=.
KDIR ?= /lib/modules/$(shell uname -r)/build

all: modules{programs}

modules:
\t$(MAKE) -C $(KDIR) M=$(CURDIR) modules
{program_rules}
clean:
\t$(MAKE) -C $(KDIR) M=$(CURDIR) clean
\trm -f{program_names}

.PHONY: all modules clean
"""

BPF_RULE = """
klp-bpf: klp-bpf.c
\t$(CC) -static -O2 -Wall -o $@ $<
"""


@dataclass(frozen=True)
class Expectation:
    series: str
    steps: list[PlannedStep]


def _insmod_error(errno_value: int) -> str:
    return INSMOD_MESSAGES.get(errno_value) or os.strerror(errno_value)


def expected_block(step: PlannedStep) -> list[str]:
    """One step's expectation, in the lines run.sh writes for what it observed."""
    head = f"@@ step {step.number}: {format_step(step.step)}"
    if step.record.report:
        return [head, f"report: {step.record.report}"]
    if not step.failed:
        result = "ok"
    elif isinstance(step.step, Load):
        result = f"fails: {_insmod_error(step.record.errno)}"
    else:
        result = "fails"
    lines = [head, f"result: {result}"]
    dirs = " ".join(f"{p}:{t}" for p, t in sorted(step.patch_dirs().items()))
    lines.append(f"livepatches: {dirs}".rstrip())
    for key, impl in step.record.impls.items():
        obj, _, func = key.partition(":")
        lines.append(f"runs: {read_file(obj, func)} {expected_read(obj, func, impl) or ORIGINAL}")
    lines += [f"log: {line}" for line in step.kernel_lines()]
    return lines


def expected_text(expectation: Expectation) -> str:
    lines = [line for step in expectation.steps for line in expected_block(step)]
    return "\n".join(lines) + "\n"


def _action(scenario: Scenario, step: Step) -> str:
    """run.sh's command for one step (its helpers set $result)."""
    q = shlex.quote
    match step:
        case Load(module=m, params=params):
            return " ".join(["load_module", q(m), *(q(f"{k}={v}") for k, v in params)])
        case Unload(module=m):
            return f"unload_module {q(m)}"
        case Enable(patch=p) | Disable(patch=p):
            return f"write_file {int(isinstance(step, Enable))} /sys/kernel/livepatch/{p}/enabled"
        case Force(patch=p):
            return f"write_file 1 /sys/kernel/livepatch/{p}/force"
        case SetParam(module=m, param=param, value=v):
            return f"write_file {q(v)} /sys/module/{m}/parameters/{param}"
        case Park(target=t) | Release(target=t):
            target = scenario.module(t)
            assert isinstance(target, TargetModule) and target.blocker is not None
            flag = "Y" if isinstance(step, Park) else "N"
            return f"write_file {flag} /sys/module/{t}/parameters/{target.blocker.param}"
        case SysctlFtrace(value=number):
            return f"write_file {number} /proc/sys/kernel/ftrace_enabled"
        case Call(object=o, func=f):
            return f"call_function {read_file(o, f)}"
        case Attach(name=n):
            prog = next(p for p in scenario.bpf if p.name == n)
            return f"attach_bpf {prog.prog} {prog.func} {n}"
        case Detach(name=n):
            return f"detach_bpf {n}"
        case Wait():
            return "result=ok"
    raise AssertionError(f"not exportable: {format_step(step)}")


RUN_SH = r"""#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
{comment}
#
# Usage, as root, after `make`:  sh run.sh [-k]
# Each step prints what the reference model expects on this kernel's series and what
# happened; the first difference ends the run with exit status 1 (-k: go on to the
# last step, then exit 1).  The modules, livepatches and BPF programs it loads are
# removed at the end, unless the kernel warned (on 6.1.192, removing what is left
# after its BPF trampoline WARN oopses).  It turns on livepatch's debug messages, as the kernel's
# selftests do (the expected lines include them).

set -u
export LC_ALL=C
cd "$(dirname "$0")" || exit 2
MODULES="{modules}"
PATCHES="{patches}"
PROGRAMS="{programs}"
KEEP_GOING=0
[ "${{1:-}}" = -k ] && KEEP_GOING=1
[ "$(id -u)" = 0 ] || {{ echo "run.sh: run it as root" >&2; exit 2; }}

release=$(uname -r)
major=${{release%%.*}}
rest=${{release#*.}}
minor=${{rest%%[!0-9]*}}
version=$((major * 1000 + minor))
{pick}
[ -n "$EXPECTED" ] || {{ echo "run.sh: no expectation for $release" >&2; exit 2; }}
echo "kernel $release: expecting what the model predicts for $SERIES ($EXPECTED)"

DYNDBG=/sys/kernel/debug/dynamic_debug/control
[ -e "$DYNDBG" ] || mount -t debugfs none /sys/kernel/debug 2>/dev/null
if ! grep -q '^kernel/livepatch/.* =p ' "$DYNDBG" 2>/dev/null; then
	RESTORE_DYNDBG=1
fi
echo 'file kernel/livepatch/* +p' > "$DYNDBG" 2>/dev/null ||
	echo "run.sh: cannot turn on livepatch's debug messages: expect differences" >&2
echo 'func klp_try_switch_task -p' > "$DYNDBG" 2>/dev/null
TMP=$(mktemp -d) || exit 2
: > "$TMP/files"

cleanup() {{
	if [ -n "${{HURT:-}}" ]; then
		echo "the kernel warned (dmesg): nothing is removed from it; reboot it"
		rm -rf "$TMP"
		return
	fi
	for p in $PROGRAMS; do rm -f "/sys/fs/bpf/klp-repro-$p"; done
	for p in $PATCHES; do
		[ -e "/sys/kernel/livepatch/$p/enabled" ] && echo 0 > "/sys/kernel/livepatch/$p/enabled"
	done
	for m in $MODULES; do
		n=0
		while [ -e "/sys/module/$m" ] && [ $n -lt 100 ]; do
			rmmod "$m" 2>/dev/null || sleep 0.1 2>/dev/null || sleep 1
			n=$((n + 1))
		done
	done
	[ -n "${{RESTORE_DYNDBG:-}}" ] && echo 'file kernel/livepatch/* -p' > "$DYNDBG" 2>/dev/null
	rm -rf "$TMP"
}}
trap cleanup EXIT
trap 'exit 130' INT TERM

nap() {{ sleep 0.1 2>/dev/null || sleep 1; }}

# a kernel report's lines; the log's time stamps and caller ids; its warnings, as
# `report: warning at FILE:LINE FUNCTION` (6.x: "WARNING: CPU: 0 PID: 1 at FILE:LINE
# FUNC+0x1/0x2", 7.x: "WARNING: FILE:LINE at FUNC+0x1/0x2, CPU#0: comm/1")
REPORTS='/^-+\[ cut here \]-+$/ {{ skip = 1 }} !skip {{ print }} /^---\[ end trace/ {{ skip = 0 }}'
STAMP='s/^\[[ 0-9.]*\] //'
CALLER='s/^\[ *[CT][0-9]*\] //'
WARNING='s/^.*WARNING: CPU: [0-9]* PID: [0-9]* at \([^ ]*\) \([^+ ]*\).*/report: warning at \1 \2/p'
WARNING2='s/^.*WARNING: \([^ ]*:[0-9]*\) at \([^+ ]*\).*/report: warning at \1 \2/p'

# expected(step): the expectation of a step, as observed() writes what happened
expected() {{
	awk -v head="@@ step $1:" 'index($0, head) == 1 {{ p = 1; print; next }} /^@@ / {{ p = 0 }} p' \
		"$EXPECTED"
}}

load_module() {{
	m=$1; shift
	if [ -e "/sys/module/$m" ]; then result=ok; return; fi   # as modprobe does
	if out=$(insmod "./$m.ko" "$@" 2>&1); then result=ok; else result="fails: ${{out##*: }}"; fi
}}

unload_module() {{
	if grep -q '^result: ok' "$TMP/expected"; then   # let a freed livepatch drop its reference
		n=0
		while [ -e "/sys/module/$1/refcnt" ] && [ "$(cat "/sys/module/$1/refcnt")" != 0 ] &&
			[ $n -lt 600 ]; do nap; n=$((n + 1)); done
	fi
	if rmmod "$1" 2>/dev/null; then result=ok; else result=fails; fi
}}

write_file() {{
	if (echo "$1" > "$2") 2>/dev/null; then result=ok; else result=fails; fi
}}

call_function() {{
	head -n 1 "$1" > /dev/null 2>&1
	result=ok
}}

attach_bpf() {{
	if ./klp-bpf attach "$1" "$2" "/sys/fs/bpf/klp-repro-$3" 2>/dev/null; then
		result=ok
	else
		result=fails
	fi
}}

detach_bpf() {{
	if ./klp-bpf detach "/sys/fs/bpf/klp-repro-$1" 2>/dev/null; then
		result=ok
	else
		result=fails
	fi
}}

livepatches() {{
	for d in /sys/kernel/livepatch/*; do
		[ -d "$d" ] && printf ' %s:%s' "${{d##*/}}" "$(cat "$d/transition")"
	done
}}

# begin(step, text): remember where the kernel log is
begin() {{
	STEP=$1
	echo "== step $1: $2"
	expected "$1" > "$TMP/expected"
	LOGSTART=$(dmesg | wc -l)
}}

# finish(step): wait for the livepatches expected, observe, compare; 1 on a difference
finish() {{
	if ! grep -q '^report: ' "$TMP/expected"; then
		want=$(sed -n 's/^livepatches://p' "$TMP/expected")
		n=0
		while [ "$(livepatches)" != "$want" ] && [ $n -lt 600 ]; do nap; n=$((n + 1)); done
		# the functions it reads; after a kernel report, those of the step before
		sed -n 's/^runs: \([^ ]*\) .*/\1/p' "$TMP/expected" > "$TMP/files"
	fi
	now=$(livepatches)
	: > "$TMP/runs"
	while read -r f; do   # a read is a call: it may be what makes the kernel warn
		line=$(head -n 1 "$f" 2>/dev/null)
		case "$f:$line" in
		*": this has been live patched") ;;
		/proc/cmdline:* | /proc/meminfo:*) line="{original}" ;;
		esac
		echo "runs: $f $line" >> "$TMP/runs"
	done < "$TMP/files"
	dmesg | tail -n +$((LOGSTART + 1)) | sed -e "$STAMP" -e "$CALLER" > "$TMP/new"
	{{
		echo "@@ step $1: ${{2}}"
		if ! grep -q '^report: ' "$TMP/expected"; then
			echo "result: $result"
			echo "livepatches:$now"
			cat "$TMP/runs"
			awk "$REPORTS" "$TMP/new" | grep -v -e 'tainting kernel' -e 'taints kernel' |
				grep -E -e 'livepatch:' {module_patterns} | sed 's/^/log: /'
		fi
		sed -n -e "$WARNING" -e "$WARNING2" "$TMP/new" | head -n 1
	}} > "$TMP/observed"
	grep -q '^report: ' "$TMP/observed" && HURT=1
	echo "  expected:"; sed -e 1d -e 's/^/    /' "$TMP/expected"
	echo "  observed:"; sed -e 1d -e 's/^/    /' "$TMP/observed"
	if diff "$TMP/expected" "$TMP/observed" > /dev/null; then
		echo "  -> as expected"
		[ -z "$HURT" ] || finished   # a predicted kernel report: the kernel is hurt
		return 0
	fi
	echo "  -> DIFFERENT"
	DIFFERENT="$DIFFERENT $1"
	[ $KEEP_GOING = 1 ] && [ -z "$HURT" ] || finished
	return 0
}}

finished() {{
	if [ -n "$DIFFERENT" ]; then
		echo "differences at step(s)$DIFFERENT: this kernel does not behave as expected"
		exit 1
	fi
	echo "every step as expected"
	exit 0
}}

# last(step): the last step the expectation has (a kernel report ends it)
last() {{
	grep -q "^@@ step $1:" "$EXPECTED" && ! grep -q "^@@ step $(($1 + 1)):" "$EXPECTED"
}}

DIFFERENT= HURT=
{steps}
finished
"""


def run_sh(scenario: Scenario, expectations: list[Expectation]) -> str:
    """run.sh for `scenario` with the expectation files of `expectations`."""
    modules = [m.name for m in scenario.modules]
    patches = [m.name for m in scenario.modules if isinstance(m, PatchModule)]
    steps: list[str] = []
    for index, step in enumerate(scenario.steps, start=1):
        text = shlex.quote(format_step(step))
        steps += [
            f"begin {index} {text}",
            _action(scenario, step),
            f"finish {index} {text}",
            f"last {index} && finished",
        ]
    # unload in the reverse order of loading: a target after the patches of it
    order = list(dict.fromkeys(s.module for s in scenario.steps if isinstance(s, Load)))
    order = [m for m in reversed(order) if m in modules]
    return RUN_SH.format(
        comment="\n".join(f"# {line}" for line in _header(scenario)),
        modules=" ".join(order),
        patches=" ".join(patches),
        programs=" ".join(p.name for p in scenario.bpf),
        pick=_pick(expectations),
        module_patterns=" ".join(
            "-e " + shlex.quote(f"(^|[^A-Za-z0-9_]){m}([^A-Za-z0-9_]|$)") for m in modules
        ),
        original=ORIGINAL,
        steps="\n".join(steps),
    )


def _header(scenario: Scenario) -> list[str]:
    words = (
        f"Reproducer exported by klp-harness from {scenario.path}: {scenario.description}"
    ).split()
    lines, current = [], ""
    for word in words:
        if current and len(current) + len(word) + 1 > 78:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*lines, current]


def _series_number(series: str) -> int:
    major, minor = (int(x) for x in series.split("."))
    return major * 1000 + minor


def _pick(expectations: list[Expectation]) -> str:
    """Shell choosing the expectation of the newest series not newer than the kernel."""
    lines = ["EXPECTED= SERIES="]
    for expectation in sorted(expectations, key=lambda e: _series_number(e.series)):
        lines.append(
            f"[ $version -ge {_series_number(expectation.series)} ] && "
            f"SERIES={expectation.series} EXPECTED=expected-{expectation.series}"
        )
    return "\n".join(lines)


def export_repro(
    scenario: Scenario, out: Path, expect: Expect, profile: str | None = None
) -> list[str]:
    """Write the reproducer of `scenario` into `out`; returns the series it has
    expectations for (every series the model knows, or `profile`'s only)."""
    check_exportable(scenario, Kind.REPRO, profile or "")
    series = [profile.removeprefix("debian-")] if profile else list(PROFILES)
    expectations = [
        Expectation(s, plan(scenario, s, expect))
        for s in series
        if not scenario.kernels or f"debian-{s}" in scenario.kernels
    ]
    out.mkdir(parents=True, exist_ok=True)
    sources = render_sources(scenario, str(scenario.path))
    for name, text in sources.items():
        atomic_write(out / f"{name}.c", text)
    atomic_write(out / "Kbuild", kbuild(list(sources)))
    programs = " klp-bpf" if scenario.bpf else ""
    atomic_write(
        out / "Makefile",
        MAKEFILE.format(
            programs=programs,
            program_rules=BPF_RULE if scenario.bpf else "",
            program_names=programs,
        ),
    )
    if scenario.bpf:
        atomic_write(out / "klp-bpf.c", BPF_LOADER.read_text())
    for expectation in expectations:
        atomic_write(out / f"expected-{expectation.series}", expected_text(expectation))
    atomic_write(out / "run.sh", run_sh(scenario, expectations))
    (out / "run.sh").chmod(0o755)
    return [e.series for e in expectations]
