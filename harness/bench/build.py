"""Benchmark: module build time, 1 module vs 10, cold and cached, per kernel profile.

Kbuild's fixed cost (parsing the kernel's Makefiles, modpost, linking) dominates a small
module, which is why the builder puts every missing module into one make call; the
goal is 10 modules in at most 3x the time of one.  Cold builds use a fresh cache
directory, so they never touch the user's cache.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.kernel.profiles import KernelProfile, load_profile, profile_names
from harness.modules.build import build_modules
from harness.scenario.types import VMLINUX, Module, PatchModule, PatchObject, TargetModule


def bench_modules(count: int) -> list[Module]:
    """`count` modules alternating target / livepatch for that target."""
    modules: list[Module] = []
    for i in range(count):
        if i % 2 == 0:
            modules.append(TargetModule(f"klp_bench_t{i}", ("alpha", "beta")))
        else:
            target = f"klp_bench_t{i - 1}"
            objects = (
                PatchObject(VMLINUX, ("cmdline_proc_show",)),
                PatchObject(target, ("alpha",)),
            )
            modules.append(PatchModule(f"klp_bench_p{i}", objects))
    if count == 1:  # a lone livepatch module: the usual single rebuild
        modules = [PatchModule("klp_bench_p", (PatchObject(VMLINUX, ("cmdline_proc_show",)),))]
    return modules


def _timed(modules: list[Module], profile: KernelProfile, cache: Path) -> tuple[float, int]:
    start = time.monotonic()
    result = build_modules(modules, profile, cache_dir=cache)
    return time.monotonic() - start, len(result.built)


def bench_build() -> None:
    """Print cold and cached build times of 1 and 10 modules for each fetched profile."""
    for name in profile_names():
        try:
            profile = load_profile(name)
        except HarnessError as exc:
            print(f"build {name}: skipped ({exc})")
            continue
        cold: dict[int, float] = {}
        for count in (1, 10):
            modules = bench_modules(count)
            with tempfile.TemporaryDirectory(prefix="klp-bench-") as tmp:
                cold[count], built = _timed(modules, profile, Path(tmp))
                cached, rebuilt = _timed(modules, profile, Path(tmp))
            assert built == count and rebuilt == 0
            print(
                f"build {name}: {count:2d} module(s): cold {cold[count]:6.2f}s, "
                f"cached {cached:6.3f}s"
            )
        ratio = cold[10] / cold[1]
        verdict = "ok" if ratio <= 3 else "over the 3x goal"
        print(f"build {name}: 10 modules / 1 module cold = {ratio:.2f}x ({verdict})")


if __name__ == "__main__":
    bench_build()
