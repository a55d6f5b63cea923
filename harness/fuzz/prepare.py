"""The palette on a kernel profile: checked and built once, before any guest.

What `klp-harness run` checks for a scenario is checked for the palette: its real
functions and BPF programs against the profile's symbols (harness/symbols), its
generated modules built (cached per module), the modules of the kernel its patches
name taken from the profile, and its bodies' prototypes against BTF.  Every guest of
the run then gets the whole palette installed.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.fuzz.palette import ORDER, PALETTE, SAMPLES_TEXT
from harness.fuzz.worlds import steps_of, world
from harness.kernel.profiles import KernelProfile
from harness.modules.build import build_modules
from harness.modules.external import resolve_scenario
from harness.modules.signatures import check_bodies
from harness.runner.prepare import kernel_module_files
from harness.scenario.loader import load_scenario
from harness.symbols.validate import validate_symbols
from harness.upstream.samples import sample_locator

PALETTE_PATCHES = {p.name: p for p in PALETTE.patches}
PALETTE_TARGETS = {t.name: t for t in PALETTE.targets}


def palette_modules(profile: KernelProfile, echo: Callable[[str], None]) -> dict[str, Path]:
    """Every palette module's file for `profile` (built, the kernel's own, or one of
    the kernel's samples)."""
    started = time.monotonic()
    # checked with every step a history may take (the triggers' functions, the
    # loads of the kernel's modules)
    validate_symbols([dataclasses.replace(PALETTE, steps=steps_of(world(ORDER)))], [profile])
    built = build_modules(PALETTE, profile)
    modules = {**built.modules, **kernel_module_files(PALETTE, profile), **sample_files(profile)}
    check_bodies(PALETTE, profile, modules)
    echo(
        f"[{profile.name}] palette: {len(modules)} modules ({len(built.built)} built) "
        f"in {time.monotonic() - started:.1f}s"
    )
    return modules


def sample_files(profile: KernelProfile) -> dict[str, Path]:
    """The samples' files for `profile`, once reading them gives what the palette
    declares (the model predicts from the declaration, model-only runs included)."""
    with tempfile.TemporaryDirectory(prefix="klp-fuzz-samples-") as tmp:
        path = Path(tmp) / "samples.toml"
        path.write_text(SAMPLES_TEXT)
        declared = load_scenario(path)
    read, files = resolve_scenario(declared, profile, sample_locator(profile))
    for patch in read.patches:
        if patch != PALETTE_PATCHES[patch.name]:
            raise HarnessError(f"{profile.name}: the palette's {patch.name} is not its file's")
    for target in read.targets:
        want = PALETTE_TARGETS[target.name]
        if (target.funcs, target.log_init_exit, target.ko) != (
            want.funcs,
            want.log_init_exit,
            want.ko,
        ):
            raise HarnessError(f"{profile.name}: the palette's {target.name} is not its file's")
    return files
