"""`klp-harness export kselftest`: scenarios as a directory of livepatch selftests.

The directory has upstream's layout, so it can be merged into a kernel tree's
tools/testing/selftests/livepatch (6.8 and later; before, the modules go to
lib/livepatch) or run as it is by `klp-harness selftests --dir`:

    test-<name>.sh           one per scenario (mode 0755)
    test_modules/<mod>.c     the test modules, plain C (harness/export/modules.py)
    test_modules/Makefile    builds them against KDIR, like upstream's test_modules/
    Makefile.lines           the lines to add to the tree's Makefiles

Module names are upstream's `test_klp_*` (harness/export/names.py).  Scenarios that
cannot be exported are refused, each with its reasons; the others are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.export.expect import Expect, bugs_of
from harness.export.exportable import Kind, Refused, check_exportable
from harness.export.kselftest import Header, script, script_name
from harness.export.modules import kbuild, render_sources
from harness.export.names import Namer, renamed
from harness.export.plan import plan
from harness.export.transcript import Style
from harness.files import atomic_write
from harness.scenario.types import Scenario

MODULES_DIR = "test_modules"
MAKEFILE_LINES = "Makefile.lines"

TEST_MODULES_MAKEFILE = """\
# SPDX-License-Identifier: GPL-2.0
TESTMODS_DIR := $(realpath $(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
KDIR ?= /lib/modules/$(shell uname -r)/build

{obj}
modules:
\t$(MAKE) -C $(KDIR) modules KBUILD_EXTMOD=$(TESTMODS_DIR)

clean:
\t$(MAKE) -C $(KDIR) clean KBUILD_EXTMOD=$(TESTMODS_DIR)
"""


@dataclass(frozen=True)
class Target:
    """The kernel an export is for: a profile's name and its series (the model's
    rules and functions.sh's style), and the version the header names."""

    profile: str
    series: str
    version: str


@dataclass
class Exported:
    scenario: Scenario
    script: str
    modules: list[str]


@dataclass
class ExportResult:
    exported: list[Exported] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def export_kselftests(
    scenarios: Sequence[Scenario], out: Path, target: Target, expect: Expect
) -> ExportResult:
    result = ExportResult()
    namer = Namer()
    style = Style.for_series(target.series)
    sources: dict[str, str] = {}
    scripts: dict[str, str] = {}
    for number, scenario in enumerate(scenarios, start=1):
        try:
            check_exportable(scenario, Kind.KSELFTEST, target.profile)
            exported = renamed(scenario, namer.names(scenario, str(number)))
            steps = plan(exported, target.series, expect)
        except Refused as refusal:
            result.refused.append(refusal)
            continue
        name = script_name(scenario)
        header = Header(
            source=str(scenario.path),
            description=scenario.description,
            profile=target.profile,
            version=target.version,
            expect=expect.value,
            bugs=tuple(bugs_of(target.series)) if expect is Expect.FIXED else (),
        )
        scripts[name] = script(exported, steps, style, header)
        for module, text in render_sources(exported, str(scenario.path)).items():
            sources.setdefault(module, text)
        result.exported.append(Exported(scenario, name, [m.name for m in exported.modules]))
    if result.exported:
        _write(out, scripts, sources, style)
    return result


def _write(out: Path, scripts: dict[str, str], sources: dict[str, str], style: Style) -> None:
    modules = out / MODULES_DIR
    modules.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(scripts.items()):
        atomic_write(out / name, text)
        (out / name).chmod(0o755)
    for name, text in sorted(sources.items()):
        atomic_write(modules / f"{name}.c", text)
    atomic_write(modules / "Makefile", TEST_MODULES_MAKEFILE.format(obj=kbuild(list(sources))))
    atomic_write(out / MAKEFILE_LINES, makefile_lines(sorted(scripts), sorted(sources), style))


def makefile_lines(scripts: list[str], modules: list[str], style: Style) -> str:
    """What a kernel tree's Makefiles need for these tests."""
    progs = "".join(f"\t{name} \\\n" for name in scripts)
    if style.insmod:
        objs = "".join(f"\t{name}.o \\\n" for name in modules)
        where = "tools/testing/selftests/livepatch/test_modules/Makefile, to obj-m"
    else:
        objs = "".join(f"obj-$(CONFIG_TEST_LIVEPATCH) += {name}.o\n" for name in modules)
        where = "lib/livepatch/Makefile"
    return (
        f"# tools/testing/selftests/livepatch/Makefile, to TEST_PROGS:\n{progs}\n# {where}:\n{objs}"
    )
