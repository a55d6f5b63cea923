"""`klp-harness completion [bash|zsh|fish]`: the shell's completion script, from
argcomplete: `eval "$(klp-harness completion bash)"` in ~/.bashrc completes verbs,
options, profile names and model variants."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish", "tcsh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "shell", nargs="?", default="bash", choices=SHELLS, help="the shell (default bash)"
    )


def main(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError

    try:
        from argcomplete.shell_integration import shellcode
    except ImportError:
        raise HarnessError("completion needs argcomplete: pip install argcomplete") from None
    print(shellcode(["klp-harness"], shell=args.shell), end="")
    return 0
