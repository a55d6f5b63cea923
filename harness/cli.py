"""`klp-harness` command line: a thin dispatcher over `harness.commands.*`.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`main(args) -> int`.  Command modules import their heavy dependencies inside `main`,
so building the parser stays cheap and `klp-harness model` never loads paramiko.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import HarnessError

# subcommand -> (module under harness.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("setup", "fetch kernel profiles and build guest images (idempotent)"),
    "boot": ("boot", "boot a guest and show its livepatch state"),
    "render": ("render", "render a scenario's kernel module sources"),
    "build": ("build", "build a scenario's kernel modules"),
    "model": ("model", "print the reference model's prediction for a scenario"),
    "run": ("run", "run scenarios in a guest and compare with the model"),
    "repro": ("repro", "run a scenario up to a step and open a shell in the guest"),
    "selftests": ("selftests", "run the kernel's own livepatch selftests in a guest"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klp-harness",
        description="Real-kernel test harness for Linux livepatch.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(f"harness.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"harness.commands.{module_name}":
                raise
            continue  # subcommand not available in this build
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args))
    except HarnessError as exc:
        print(f"klp-harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("klp-harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
