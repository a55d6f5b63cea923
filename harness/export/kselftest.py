"""A scenario as an upstream-style livepatch selftest: `test-<name>.sh`, run by
tools/testing/selftests/livepatch's runner beside functions.sh, and its modules.

The script does what the scenario's steps do with functions.sh's helpers (load_mod,
load_lp, load_lp_nowait, load_failing_mod, unload_mod, unload_lp, disable_lp,
set_pre_patch_ret, set_ftrace_enabled) where their semantics are the step's, and
with a few helpers of its own otherwise (a write the kernel refuses, an rmmod that
must fail).  After each step it waits, as the harness's runner does, for the state
the model predicts (no transition but a predicted pending one, exactly the predicted
patch directories), checks the livepatch sysfs files the model predicts, and reads
every patched function (a read is a call, as the runner's read is: a kprobe's
handler counts it) comparing the first line with the implementation the model
predicts.  At the end check_result compares the kernel log with the model's
transcript, and no kernel warning may have been logged; a kernel report the model
predicts (a known bug, `--expect as-is`) is checked for instead, and ends the test.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from harness.export.plan import PlannedStep, expected_read, read_file
from harness.export.transcript import Style, transcript
from harness.scenario.step_types import (
    Call,
    Disable,
    Enable,
    Force,
    Load,
    Park,
    Release,
    SetParam,
    SysctlFtrace,
    Unload,
    Wait,
    format_step,
)
from harness.scenario.types import PatchModule, Scenario, TargetModule

KLP_SYSFS = "/sys/kernel/livepatch"

# Helpers of the exported scripts beyond functions.sh (its own names are left alone).
HELPERS = r"""
# write_sysfs(value, path) - log and write a value the kernel accepts
function write_sysfs() {
	log "% echo $1 > $2"
	echo "$1" 2>/dev/null > "$2" || die "$STEP: writing $1 to $2 failed"
}

# write_failing_sysfs(value, path) - log and write a value the kernel refuses
function write_failing_sysfs() {
	log "% echo $1 > $2"
	echo "$1" 2>/dev/null > "$2" && die "$STEP: writing $1 to $2 did not fail"
	return 0
}

# unload_failing_mod(modname) - rmmod a module that must stay
function unload_failing_mod() {
	log "% rmmod $1"
	rmmod "$1" &>/dev/null && die "$STEP: $1 was unloaded"
	return 0
}

# livepatches_are(patch:transition...) - exactly these livepatches exist, each with
#	its transition value
function livepatches_are() {
	local d n=0 want t
	for d in /sys/kernel/livepatch/*; do [[ -d "$d" ]] && n=$((n + 1)); done
	[[ $n == $# ]] || return 1
	for want in "$@"; do
		read -r t 2>/dev/null < "/sys/kernel/livepatch/${want%:*}/transition" || return 1
		[[ "$t" == "${want#*:}" ]] || return 1
	done
}

# check_livepatch_files(path=value...) - files under /sys/kernel/livepatch hold these
function check_livepatch_files() {
	local kv v
	for kv in "$@"; do
		read -r v 2>/dev/null < "/sys/kernel/livepatch/${kv%%=*}"
		[[ "$v" == "${kv#*=}" ]] || die "$STEP: ${kv%%=*} is \"$v\", not \"${kv#*=}\""
	done
}

# check_runs(file, line) - a read of file (a call of the function behind it) prints
#	line first; an empty line: the original of a vmlinux function, not a livepatch
function check_runs() {
	local first
	read -r first < "$1" || die "$STEP: cannot read $1"
	if [[ -n "$2" ]]; then
		[[ "$first" == "$2" ]] || die "$STEP: $1 printed \"$first\", not \"$2\""
	elif [[ "$first" == *": this has been live patched" ]]; then
		die "$STEP: $1 printed \"$first\", not the original's"
	fi
}

# remove_modules() - disable this test's livepatches and remove its modules (targets
#	first: their exit releases a parked work), so that a test that died leaves
#	nothing behind for the next; then functions.sh's own cleanup
function remove_modules() {
	local m n
	for m in $PATCHES; do echo 0 > "/sys/kernel/livepatch/$m/enabled"; done 2>/dev/null
	for m in $TARGETS $PATCHES; do
		for ((n = 0; n < 50; n++)); do
			[[ -e "/sys/module/$m" ]] || break
			rmmod "$m" &>/dev/null || sleep .1
		done
	done
	cleanup
}

# kernel_warnings() - how many kernel warnings the log holds
function kernel_warnings() {
	dmesg | grep -c 'WARNING: '
}

# check_no_warning() - no kernel warning since the test started
function check_no_warning() {
	local now
	now=$(kernel_warnings)
	[[ "$now" == "$WARNINGS" ]] ||
		die "$STEP: a kernel warning: $(dmesg | grep 'WARNING: ' | tail -1)"
}

# check_warning(file:line, function) - the kernel warned there since the test started
function check_warning() {
	if dmesg | grep -Eq "WARNING: (CPU: [0-9]+ PID: [0-9]+ at $1 $2\+|$1 at $2\+)"; then
		echo "ok"
	else
		echo "not ok"
		die "$STEP: no kernel warning at $1 $2"
	fi
}
"""


@dataclass(frozen=True)
class Header:
    """What the script says about itself."""

    source: str  # the scenario file, as given
    description: str
    profile: str
    version: str
    expect: str
    bugs: tuple[str, ...]  # the known bugs `fixed` turns off


def script_name(scenario: Scenario) -> str:
    """`tests/scenarios/coexist/03_livepatch_first.toml` -> `test-coexist-03-livepatch-first.sh`."""
    parent = scenario.path.parent.name
    stem = scenario.path.stem
    slug = f"{parent}-{stem}" if parent and parent not in ("scenarios", ".") else stem
    return "test-" + re.sub(r"[^a-z0-9]+", "-", slug.lower()).strip("-") + ".sh"


def test_name(scenario: Scenario) -> str:
    words = re.sub(r"^\d+_", "", scenario.path.stem).replace("_", " ")
    return words or scenario.name


def variables(scenario: Scenario) -> dict[str, str]:
    """Module name -> the script's variable for it (MOD_TARGET for test_klp_target)."""
    out: dict[str, str] = {}
    for module in scenario.modules:
        stem = module.name.removeprefix("test_klp_") or module.name
        out[module.name] = "MOD_" + re.sub(r"\W", "_", stem).upper()
    return out


def _dq(text: str) -> str:
    """`text` inside a double-quoted bash string."""
    return re.sub(r'(["\\`$])', r"\\\1", text)


def _with_variables(line: str, names: dict[str, str]) -> str:
    """A transcript line, double-quote safe, with module names as their variables
    (`${MOD_TARGET}_init` where a name runs on)."""
    text = _dq(line)
    for name in sorted(names, key=len, reverse=True):
        pattern = re.compile(rf"(?<![\w$]){re.escape(name)}(?![A-Za-z0-9])")
        text = pattern.sub(_variable(names[name], text), text)
    return text


def _variable(var: str, text: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        runs_on = text[match.end() : match.end() + 1] == "_"
        return f"${{{var}}}" if runs_on else f"${var}"

    return replace


class Writer:
    """Builds one test script, step by step."""

    def __init__(self, scenario: Scenario, style: Style) -> None:
        self.scenario = scenario
        self.style = style
        self.names = variables(scenario)
        self.lines: list[str] = []

    def mod(self, name: str) -> str:
        return f"${self.names[name]}" if name in self.names else shlex.quote(name)

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def is_patch(self, name: str) -> bool:
        return isinstance(self.scenario.module(name), PatchModule)

    def action(self, step: PlannedStep) -> None:
        s, failed = step.step, step.failed
        write = "write_failing_sysfs" if failed else "write_sysfs"
        match s:
            case Load(module=m):
                params = " ".join(f"{k}={v}" for k, v in s.params)
                args = f"{self.mod(m)} {params}".rstrip()
                if step.loaded_before and self.style.insmod:
                    self.emit(
                        f"# {m} is loaded: modprobe would leave it alone, insmod cannot",
                        f'[[ -e /sys/module/{self.mod(m)} ]] || die "$STEP: {m} is not loaded"',
                    )
                elif failed:
                    self.emit(f"load_failing_mod {args}")
                elif not self.is_patch(m):
                    self.emit(f"load_mod {args}")
                elif s.nowait or step.record.pending == m or step.loaded_before:
                    self.emit(f"load_lp_nowait {args}")
                else:
                    self.emit(f"load_lp {args}")
            case Unload(module=m):
                if failed:
                    self.emit(f"unload_failing_mod {self.mod(m)}")
                else:
                    self.emit(f"unload_{'lp' if self.is_patch(m) else 'mod'} {self.mod(m)}")
            case Disable(patch=p):
                if failed or s.nowait or step.record.pending == p:
                    self.emit(f"{write} 0 {KLP_SYSFS}/{self.mod(p)}/enabled")
                else:
                    self.emit(f"disable_lp {self.mod(p)}")
            case Enable(patch=p):
                self.emit(f"{write} 1 {KLP_SYSFS}/{self.mod(p)}/enabled")
            case Force(patch=p):
                self.emit(f"{write} 1 {KLP_SYSFS}/{self.mod(p)}/force")
            case SetParam(module=m, param="pre_patch_ret", value=v) if not failed:
                self.emit(f"set_pre_patch_ret {self.mod(m)} {shlex.quote(v)}")
            case SetParam(module=m, param=param, value=v):
                self.emit(f"{write} {shlex.quote(v)} /sys/module/{self.mod(m)}/parameters/{param}")
            case Park(target=t) | Release(target=t):
                target = self.scenario.module(t)
                assert isinstance(target, TargetModule) and target.blocker is not None
                value = "Y" if isinstance(s, Park) else "N"
                path = f"/sys/module/{self.mod(t)}/parameters/{target.blocker.param}"
                self.emit(f"{write} {value} {path}")
            case SysctlFtrace(value=v):
                self.emit(f"set_ftrace_enabled {'--fail ' if failed else ''}{v}")
            case Call(object=o, func=f):
                self.emit(f"grep 'live patched' {self._file(o, f)} 2>/dev/null > /dev/kmsg")
            case Wait():
                pass  # the settled state below is what it waits for
            case _:
                raise AssertionError(f"not exportable: {format_step(s)}")

    def _file(self, obj: str, func: str) -> str:
        path = read_file(obj, func)
        return (
            path.replace(f"/proc/{obj}/", f"/proc/{self.mod(obj)}/") if obj in self.names else path
        )

    def settle(self, step: PlannedStep) -> None:
        """Wait for the predicted livepatches, then check their files and the reads."""
        if not isinstance(step.step, Call):
            wanted = " ".join(f"{self.mod(p)}:{t}" for p, t in sorted(step.patch_dirs().items()))
            condition = f"livepatches_are {wanted}".rstrip()
            self.emit(
                f"loop_until '{condition}' || "
                f'die "$STEP: the livepatches are not: {wanted or "none"}"'
            )
            files = [
                f"{self._sysfs_path(path)}={value}"
                for path, value in sorted(step.sysfs_values().items())
                if not path.endswith("/transition")
            ]
            if files:
                self.emit("check_livepatch_files " + " ".join(files))
        for key, impl in step.record.impls.items():
            obj, _, func = key.partition(":")
            line = expected_read(obj, func, impl) or ""
            line = _with_variables(line, self.names)
            self.emit(f'check_runs {self._file(obj, func)} "{line}"')

    def _sysfs_path(self, path: str) -> str:
        parts = path.split("/")
        return "/".join(self.mod(p) if p in self.names else p for p in parts)

    def report_step(self, step: PlannedStep, before: PlannedStep | None) -> None:
        """A step whose kernel report the model predicts: done, whatever it returns,
        with the reads the runner makes after it; then the report is looked for."""
        s = step.step
        self.emit("trap cleanup EXIT INT TERM HUP  # the kernel will be hurt: remove nothing")
        match s:
            case Load(module=m):
                params = " ".join(f"{k}={v}" for k, v in s.params)
                where = f"test_modules/{self.mod(m)}.ko" if self.style.insmod else self.mod(m)
                tool = "insmod" if self.style.insmod else "modprobe"
                self.emit(f"{tool} {where} {params}".rstrip() + " &>/dev/null")
            case Unload(module=m):
                self.emit(f"rmmod {self.mod(m)} &>/dev/null")
            case Call(object=o, func=f):
                self.emit(f"cat {self._file(o, f)} > /dev/null 2>&1")
            case _:
                raise AssertionError(f"a report at {format_step(s)} is not exported")
        if before is not None:
            for key in before.record.impls:
                obj, _, func = key.partition(":")
                self.emit(f"cat {self._file(obj, func)} > /dev/null 2>&1")
        where, _, func = step.record.report.removeprefix("warning at ").partition(" ")
        self.emit(f"check_warning {shlex.quote(where)} {shlex.quote(func)}")


def script(scenario: Scenario, steps: list[PlannedStep], style: Style, header: Header) -> str:
    """The text of test-<name>.sh for `scenario` (renamed to upstream names)."""
    w = Writer(scenario, style)
    w.emit("#!/bin/bash", "# SPDX-License-Identifier: GPL-2.0", "#")
    w.emit(*_comment(header))
    w.emit("", ". $(dirname $0)/functions.sh", "")
    for name, var in w.names.items():
        w.emit(f"{var}={name}")
    targets = " ".join(f"${w.names[m.name]}" for m in scenario.targets)
    patches = " ".join(f"${w.names[m.name]}" for m in scenario.patches)
    w.emit(f'TARGETS="{targets}"', f'PATCHES="{patches}"')
    w.emit(HELPERS.rstrip(), "", "setup_config", "trap remove_modules EXIT INT TERM HUP", "")
    w.emit(f'start_test "{_dq(test_name(scenario))}"', "WARNINGS=$(kernel_warnings)")
    report = next((s for s in steps if s.record.report), None)
    before: PlannedStep | None = None
    for step in steps:
        if step is report:
            break
        w.emit("", f'STEP="step {step.number}: {_dq(format_step(step.step))}"')
        w.action(step)
        w.settle(step)
        before = step
    w.emit("", 'STEP="the end"', "check_no_warning")
    lines = [_with_variables(line, w.names) for line in transcript(steps, style)]
    w.emit('check_result "' + "\n".join(lines) + '"')
    if report is not None:
        w.emit(
            "",
            f'start_test "{_dq(test_name(scenario))}: {_dq(report.record.report)}"',
            f'STEP="step {report.number}: {_dq(format_step(report.step))}"',
        )
        w.report_step(report, before)
    w.emit("", "exit 0")
    return "\n".join(w.lines) + "\n"


def _comment(header: Header) -> Iterable[str]:
    text = (
        f"Exported by klp-harness from {header.source} for {header.profile} "
        f"({header.version}), expecting {_expect_words(header)}.  The expected "
        "transcript is the harness's reference model's prediction."
    )
    for line in _wrap(text, 78):
        yield f"# {line}"
    yield "#"
    for line in _wrap(header.description, 78):
        yield f"# {line}"


def _expect_words(header: Header) -> str:
    if header.expect == "as-is":
        return "what the kernel does, its known bugs included (--expect as-is)"
    if header.bugs:
        return "a kernel without these known bugs (--expect fixed): " + "; ".join(header.bugs)
    return "a kernel without known bugs (--expect fixed; the model knows none here)"


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*lines, current] if current else lines
