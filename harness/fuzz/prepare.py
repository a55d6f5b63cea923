"""The palette on a kernel profile: checked and built once, before any guest.

What `klp-harness run` checks for a scenario is checked for the palette: its real
functions and BPF programs against the profile's symbols (harness/symbols), its
generated modules built (cached per module), the modules of the kernel its patches
name taken from the profile, and its bodies' prototypes against BTF.  Every guest of
the run then gets the whole palette installed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from harness.fuzz.palette import ORDER, PALETTE, steps_of, world
from harness.kernel.profiles import KernelProfile
from harness.modules.build import build_modules
from harness.modules.signatures import check_bodies
from harness.runner.suite import kernel_module_files
from harness.symbols.validate import validate_symbols


def palette_modules(profile: KernelProfile, echo: Callable[[str], None]) -> dict[str, Path]:
    """Every palette module's file for `profile` (built, or the kernel's own)."""
    started = time.monotonic()
    # checked with every step a history may take (the triggers' functions, the
    # loads of the kernel's modules)
    validate_symbols([dataclasses.replace(PALETTE, steps=steps_of(world(ORDER)))], [profile])
    built = build_modules(PALETTE, profile)
    modules = {**built.modules, **kernel_module_files(PALETTE, profile)}
    check_bodies(PALETTE, profile, modules)
    echo(
        f"[{profile.name}] palette: {len(modules)} modules ({len(built.built)} built) "
        f"in {time.monotonic() - started:.1f}s"
    )
    return modules
