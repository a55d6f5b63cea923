"""`klp-harness build SCENARIO... [--kernel PROFILE|all]`: build scenarios' modules.

For each kernel and each scenario meant for it: one line per module (name, whether it
was built now or came from the cache, or is a module file, and the checked .ko path),
then the vermagic check: every module's vermagic is the profile's, or the guest would
refuse it.  What is being compiled, and how long it took, goes to stderr as it
happens, with the compiler's warnings of modules built now."""

from __future__ import annotations

import argparse
import sys

from harness.commands.common import (
    add_kernel_arguments,
    add_scenario_arguments,
    positive_int,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scenario_arguments(parser)
    add_kernel_arguments(parser)
    parser.add_argument(
        "-j", "--jobs", type=positive_int, metavar="N", help="parallel compile jobs (default: CPUs)"
    )


def main(args: argparse.Namespace) -> int:
    from harness.commands.common import load_scenario_args, selected_profiles
    from harness.errors import HarnessError
    from harness.modules.build import build_modules
    from harness.modules.external import resolve_scenario
    from harness.modules.ko import read_modinfo
    from harness.modules.signatures import check_bodies
    from harness.runner.prepare import applies_to, kernel_module_files, not_for, progress_make
    from harness.runner.prepare import stderr_echo as echo
    from harness.symbols.validate import validate_symbols
    from harness.upstream.samples import sample_locator

    scenarios, _folders = load_scenario_args(args.scenarios)
    profiles = selected_profiles(args, guest=False)
    validate_symbols(scenarios, profiles)
    headers = len(scenarios) * len(profiles) > 1
    for profile in profiles:
        make = progress_make(profile, echo)
        for scenario in scenarios:
            if not applies_to(scenario, profile):
                echo(f"[{profile.name}] {scenario.name}: {not_for(scenario, profile.name)}")
                continue
            resolved, files = resolve_scenario(scenario, profile, sample_locator(profile))
            validate_symbols([resolved], [profile])  # the objects module files name
            result = build_modules(
                [m for m in resolved.modules if not m.ko], profile, make=make, jobs=args.jobs
            )
            modules = {**result.modules, **files}
            check_bodies(resolved, profile, {**modules, **kernel_module_files(resolved, profile)})
            if headers:
                print(f"== {scenario.name} on {profile.name} ({profile.release})")
            width = max((len(name) for name in modules), default=0)
            for name in sorted(modules):
                how = "file" if name in files else "built" if name in result.built else "cached"
                print(f"{name:<{width}}  {how:<6}  {modules[name]}")
            vermagics = {
                name: " ".join(read_modinfo(path).get("vermagic", [""])[0].split())
                for name, path in modules.items()
            }
            wrong = {name: v for name, v in vermagics.items() if v != profile.vermagic}
            if wrong:  # the build checks it: only a module file changed since could
                name, value = sorted(wrong.items())[0]
                raise HarnessError(
                    f"{name}: vermagic {value!r} is not {profile.name}'s {profile.vermagic!r}"
                )
            print(f"vermagic: {len(modules)} module(s) match {profile.name}: {profile.vermagic}")
            for name, lines in sorted(result.warnings.items()):
                for line in lines:
                    print(f"klp-harness: warning: {name}: {line.strip()}", file=sys.stderr)
    return 0
