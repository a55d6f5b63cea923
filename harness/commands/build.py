"""`klp-harness build SPEC`: build a scenario's modules for one kernel profile.

Prints one line per module: name, whether it was built now or came from the cache, and
the checked .ko path.  Compiler warnings of modules built now go to stderr."""

from __future__ import annotations

import argparse
import sys

from harness.commands.common import add_kernel_arguments, positive_int, tree_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="scenario TOML file")
    add_kernel_arguments(parser)
    parser.add_argument(
        "-j", "--jobs", type=positive_int, metavar="N", help="parallel compile jobs (default: CPUs)"
    )


def main(args: argparse.Namespace) -> int:
    from harness.kernel.profiles import resolve_profile
    from harness.modules.build import build_modules
    from harness.modules.external import ModuleFiles, resolve_scenario
    from harness.modules.signatures import check_bodies
    from harness.runner.suite import kernel_module_files
    from harness.scenario.loader import load_scenario
    from harness.symbols.validate import validate_symbols
    from harness.upstream.samples import sample_locator

    scenario = load_scenario(args.spec, ModuleFiles())
    profile = tree_profile(args.kernel_dir) if args.kernel_dir else resolve_profile(args.kernel)
    scenario, files = resolve_scenario(
        scenario, profile, sample_locator(profile)
    )  # module files: checked, read
    validate_symbols([scenario], [profile])
    result = build_modules(scenario, profile, jobs=args.jobs)
    modules = {**result.modules, **files}
    check_bodies(scenario, profile, {**modules, **kernel_module_files(scenario, profile)})
    width = max((len(name) for name in modules), default=0)
    for name in sorted(modules):
        how = "file" if name in files else "built" if name in result.built else "cached"
        print(f"{name:<{width}}  {how:<6}  {modules[name]}")
    for name, lines in sorted(result.warnings.items()):
        for line in lines:
            print(f"klp-harness: warning: {name}: {line.strip()}", file=sys.stderr)
    return 0
