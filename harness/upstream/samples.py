"""The kernel's own sample livepatch modules, built unmodified for a profile.

`samples/livepatch/` (livepatch-sample, the callbacks demo with its two target
modules, the shadow-variable demo with its two fixes) is code the harness did not
write: a corpus for external modules (`ko = ...` in a scenario, `klp-harness
check`).  The sources come from the profile's Debian `linux-source` package, fetched
once together with the selftests (`harness.kernel.sources.fetch_sources`), or from the
user's tree; they are built by the same cached build as generated modules
(`harness.modules.build.build_sources`, so the 7.x profile builds in its build root).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.kernel.profiles import KernelProfile
from harness.kernel.sources import SAMPLES, fetch_sources
from harness.modules.build import build_sources
from harness.modules.external import SampleLocator
from harness.modules.ko import declares_livepatch

# What each sample file is: a livepatch (MODULE_INFO(livepatch, "Y")) or a target.
SAMPLE_NAMES = (
    "livepatch-sample",
    "livepatch-callbacks-demo",
    "livepatch-callbacks-mod",
    "livepatch-callbacks-busymod",
    "livepatch-shadow-mod",
    "livepatch-shadow-fix1",
    "livepatch-shadow-fix2",
)


@dataclass(frozen=True)
class Samples:
    """Built sample modules of one profile: file name (`livepatch-sample`) -> .ko."""

    profile: str
    modules: dict[str, Path]

    def ko(self, name: str) -> Path:
        try:
            return self.modules[name]
        except KeyError:
            known = ", ".join(sorted(self.modules))
            raise UsageError(f"no sample module {name} (samples: {known})") from None


def sample_sources(profile: KernelProfile) -> dict[str, str]:
    """{file stem: C source} of the profile's samples/livepatch."""
    directory = fetch_sources(profile).root / SAMPLES
    sources = {}
    for name in SAMPLE_NAMES:
        path = directory / f"{name}.c"
        if path.is_file():
            sources[name] = path.read_text()
    if not sources:
        raise HarnessError(f"{profile.name}: no livepatch samples in {directory}")
    return sources


def build_samples(profile: KernelProfile, jobs: int | None = None) -> Samples:
    """Build (or take from the build cache) every sample module for `profile`."""
    sources = sample_sources(profile)
    livepatch = [name for name, text in sources.items() if declares_livepatch(text)]
    result = build_sources(sources, profile, livepatch, jobs=jobs)
    return Samples(profile.name, dict(result.modules))


def sample_locator(profile: KernelProfile) -> SampleLocator:
    """Where `samples:NAME` of a scenario is for `profile` (harness.modules.external):
    built, or taken from the build cache, when a scenario first names one."""

    def locate(name: str) -> Path:
        return build_samples(profile).ko(name)

    return locate
