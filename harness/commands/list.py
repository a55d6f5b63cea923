"""`klp-harness list [SCENARIO...] [--kernel PROFILE|all] [--feature NAME]`: scenarios
with their description, the kernels they are meant for and the features they use
(step kinds, and what their modules and actors do: replace, callbacks, shadow,
kprobe, bpf, ...), filtered by kernel and by feature.  Without a path: the shipped
scenarios (tests/scenarios of the checkout, or of the current directory)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.common import SCENARIOS_HELP

if TYPE_CHECKING:
    from harness.scenario.types import Scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.kernel.profiles import profile_names

    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=SCENARIOS_HELP)
    kernel = parser.add_argument(
        "--kernel",
        action="append",
        metavar="PROFILE",
        help=f"only scenarios meant for this kernel profile ({', '.join(profile_names())}); "
        "repeatable",
    )
    kernel.completer = lambda **_kwargs: profile_names()  # type: ignore[attr-defined]
    parser.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME",
        help="only scenarios that use this feature (repeatable: all of them); "
        "`--feature list` lists the features",
    )
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def default_paths() -> list[Path]:
    """The shipped scenarios: the current directory's tests/scenarios, else the
    checkout's this package runs from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "tests" / "scenarios").is_dir():
            return [root / "tests" / "scenarios"]
    return []


def features(scenario: Scenario) -> list[str]:
    """What a scenario exercises, sorted: its step kinds and what its modules and
    actors use."""
    from harness.scenario.step_types import NOWAIT, format_step
    from harness.scenario.types import VMLINUX

    found = {format_step(step).split()[0] for step in scenario.steps}
    if any(NOWAIT in format_step(step).split() for step in scenario.steps):
        found.add("nowait")
    for patch in scenario.patches:
        found |= {name for name, used in (
            ("replace", patch.replace), ("states", patch.states), ("shadow", patch.shadow),
            ("pre_patch_ret", patch.pre_patch_ret), ("ko", patch.ko),
        ) if used}  # fmt: skip
        for obj in patch.objects:
            found |= {name for name, used in (
                ("callbacks", obj.callbacks), ("shadow_field", obj.shadow_field is not None),
                ("klp_relocs", obj.klp_relocs), ("vmlinux", obj.name == VMLINUX),
                ("sympos", any(s.sympos for s in obj.specs)),
                ("body", any(s.body for s in obj.specs)),
            ) if used}  # fmt: skip
    for target in scenario.targets:
        found |= {name for name, used in (
            ("blocker", target.blocker), ("spinner", target.spinner), ("kprobe", target.kprobe),
            ("shadow", target.shadow), ("ko", target.ko),
        ) if used}  # fmt: skip
    if any(m.ko.startswith("samples:") for m in scenario.modules):
        found.add("samples")
    if scenario.real_objects():
        found.add("kernel-module")
    found |= {name for name, used in (
        ("processes", scenario.processes), ("bpf", scenario.bpf), ("smp", scenario.cpus > 1),
    ) if used}  # fmt: skip
    return sorted(found)


def main(args: argparse.Namespace) -> int:
    from harness.commands.common import load_scenario_args
    from harness.errors import UsageError
    from harness.kernel.profiles import profile_names
    from harness.runner.suite import shard_key

    paths = [Path(p) for p in args.scenarios] or default_paths()
    if not paths:
        raise UsageError("no tests/scenarios here: give scenario files or directories")
    scenarios, _folders = load_scenario_args([str(p) for p in paths])
    table = [(s, features(s)) for s in scenarios]
    if args.feature == ["list"]:
        for name in sorted({f for _, used in table for f in used}):
            print(name)
        return 0
    kernels = args.kernel or []
    if "all" in kernels:
        kernels = []
    for name in kernels:
        if name not in profile_names():
            raise UsageError(f"--kernel {name}: unknown kernel profile")
    chosen = [
        (s, used)
        for s, used in table
        if all(f in used for f in args.feature)
        and (not kernels or not s.kernels or any(k in s.kernels for k in kernels))
    ]
    if args.json:
        data = [
            {
                "scenario": s.name,
                "path": str(s.path),
                "description": s.description,
                "kernels": list(s.kernels) or profile_names(),
                "features": used,
            }
            for s, used in chosen
        ]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    for s, used in chosen:
        meant = ", ".join(s.kernels) if s.kernels else "all kernels"
        print(f"{shard_key(s.path)}  [{meant}]  {' '.join(used)}")
        print(f"    {' '.join(s.description.split())}")
    print(f"{len(chosen)} of {len(table)} scenario(s)", file=sys.stderr)
    return 0
