"""`klp-harness export repro`: a scenario as a standalone reproducer, for a machine
with no Python and no harness.

    <module>.c, Kbuild   the modules (harness/export/modules.py)
    Makefile             `make` builds them against /lib/modules/$(uname -r)/build,
                         or KDIR=; and klp-bpf when the scenario attaches BPF programs
    klp-bpf.c            (then) a BPF fentry/fexit loader with no library
    klp-rela.c           (when a patch has klp relocations) the ELF rewrite that makes
                         them, run on the built patch modules by `make modules`
    expected-<series>    what each step should do on that kernel series, the
                         reference model's prediction
    run.sh               POSIX sh (kmod_templates/export/run.sh.j2): runs the steps,
                         prints each step's expected and observed result, exits 1
                         at the first difference (or, with -k, after the last
                         step), 0 when every step was as expected

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
from harness.export.modules import kbuild, render_sources, templates
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

IMAGES = Path(__file__).resolve().parents[2] / "images"
BPF_LOADER = IMAGES / "klp-bpf.c"
RELA_WRITER = IMAGES / "klp-rela.c"
ORIGINAL = "(original)"

MAKEFILE = """\
# SPDX-License-Identifier: GPL-2.0
# The reproducer's modules, against the running kernel's build tree or KDIR=.
KDIR ?= /lib/modules/$(shell uname -r)/build

all: modules{programs}

modules:{modules_needs}
\t$(MAKE) -C $(KDIR) M=$(CURDIR) modules
{after_modules}{program_rules}
clean:
\t$(MAKE) -C $(KDIR) M=$(CURDIR) clean
\trm -f{program_names}

.PHONY: all modules clean
"""

BPF_RULE = """
klp-bpf: klp-bpf.c
\t$(CC) -static -O2 -Wall -o $@ $<
"""

RELA_RULE = """
klp-rela: klp-rela.c
\t$(CC) -O2 -Wall -o $@ $<
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
    return (
        templates()
        .get_template("run.sh.j2")
        .render(
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


def makefile(bpf: bool, relocated: list[str]) -> str:
    """The reproducer's Makefile: the modules, klp-bpf for BPF programs, and klp-rela
    run on each patch module in `relocated` once kbuild has made it."""
    converts = "".join(f"\t./klp-rela {name}.ko\n" for name in relocated)
    return MAKEFILE.format(
        programs=" klp-bpf" if bpf else "",
        modules_needs=" klp-rela" if relocated else "",
        after_modules=converts,
        program_rules=(BPF_RULE if bpf else "") + (RELA_RULE if relocated else ""),
        program_names=(" klp-bpf" if bpf else "") + (" klp-rela" if relocated else ""),
    )


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
    relocated = [p.name for p in scenario.patches if any(o.klp_relocs for o in p.objects)]
    atomic_write(out / "Makefile", makefile(bool(scenario.bpf), relocated))
    if scenario.bpf:
        atomic_write(out / "klp-bpf.c", BPF_LOADER.read_text())
    if relocated:
        atomic_write(out / "klp-rela.c", RELA_WRITER.read_text())
    for expectation in expectations:
        atomic_write(out / f"expected-{expectation.series}", expected_text(expectation))
    atomic_write(out / "run.sh", run_sh(scenario, expectations))
    (out / "run.sh").chmod(0o755)
    return [e.series for e in expectations]
