"""What a run's guests are made with beyond the profile: virtme-ng-style options
(`--append`, `--memory`, `--cpus`, `--qemu-opt`), applied to every guest config of the run.

They change the guest config, so they change its snapshot's key (the QEMU command line
is hashed); `argv()` gives them back as options of the command line, which is how a
scenario's artifacts say how to run it again (`ScenarioOutcome.run_options`)."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass

from harness.guest.config import GuestConfig


@dataclass(frozen=True)
class GuestOptions:
    append: tuple[str, ...] = ()  # extra kernel command-line parameters
    memory_mib: int | None = None  # None: the config's own (512)
    cpus: int | None = None  # at least this many CPUs (a scenario's `cpus` may ask more)
    qemu_opts: tuple[str, ...] = ()  # extra QEMU arguments, each as given (shell words)

    def apply(self, config: GuestConfig) -> GuestConfig:
        """`config` with these options."""
        words = tuple(word for text in self.qemu_opts for word in shlex.split(text))
        return dataclasses.replace(
            config,
            append=(*config.append, *self.append),
            memory_mib=config.memory_mib if self.memory_mib is None else self.memory_mib,
            cpus=max(config.cpus, self.cpus or 0),
            qemu_opts=(*config.qemu_opts, *words),
        )

    def argv(self) -> list[str]:
        """The command-line options that give these options again."""
        words: list[str] = []
        for param in self.append:
            words += ["--append", param]
        if self.memory_mib is not None:
            words += ["--memory", str(self.memory_mib)]
        if self.cpus is not None:
            words += ["--cpus", str(self.cpus)]
        words += [f"--qemu-opt={text}" for text in self.qemu_opts]  # `=`: it starts with -
        return words
