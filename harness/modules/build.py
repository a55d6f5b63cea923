"""Build rendered modules against a kernel profile, with a cache shared by every checkout.

Each module is cached on its own, under `cache_root()/builds/<key>/`, where the key is
the sha256 of its rendered source, the Kbuild flags, the profile (name, release,
vermagic) and the compiler's `--version`: an unchanged module is never rebuilt, however
many scenarios use it.  What the cache lacks is built in ONE `make -C <build_dir> M=<dir>
-jN modules` call, since kbuild's fixed cost (reading the kernel's Makefiles, modpost)
dominates a small module's build time.

Every `.ko` handed out has been checked: its vermagic is the profile's (so the guest will
load it) and a livepatch module carries `livepatch=Y` (so the kernel treats it as one).
Cache entries are verified against the checksums recorded when they were written
(`harness.modules.cache`); a damaged one is rebuilt.  A failed build raises a one-line
HarnessError naming the module, the compiler's first error and the saved log.

How make and the compiler are run is harness.modules.kbuild's; what a body may
include, harness.modules.confine's (checked before anything is compiled).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.files import discard, make_temp_dir
from harness.kernel import buildroot
from harness.kernel import profiles as kernels
from harness.kernel.kconfig import RECIPE
from harness.kernel.profiles import KernelProfile
from harness.modules import cache as build_cache
from harness.modules import klprela
from harness.modules.bodies import body_error
from harness.modules.cache import LOG
from harness.modules.confine import check_includes
from harness.modules.kbuild import (
    BuildTimeout,
    MakeRunner,
    compiler_for,
    compiler_id,
    failure_line,
    lines_about,
    make_command,
    run_make,
)
from harness.modules.ko import BadModule, check_ko, read_modinfo
from harness.modules.render import KBUILD, render_kbuild, render_sources, write_sources
from harness.scenario.types import Module, PatchModule, Scenario

__all__ = [
    "BuildResult",
    "MakeRunner",
    "build_modules",
    "build_sources",
    "check_ko",
    "failure_line",
    "read_modinfo",
]

# Bump when the cache layout or anything else not in the key changes what a build makes.
CACHE_FORMAT = 2  # 2: entries carry a manifest of checksums


def module_key(name: str, source: str, profile: KernelProfile, compiler: str) -> str:
    """Cache key of one module: everything that determines its .ko."""
    material = {
        "format": CACHE_FORMAT,
        "name": name,
        "source": source,
        "kbuild": render_kbuild([name]),
        "profile": [profile.name, profile.release, profile.vermagic],
        "compiler": compiler,
    }
    if klprela.in_source(source):  # converted after make (harness/modules/klprela.py)
        material["klprela"] = klprela.FORMAT
    identity = kernels.tree_identity(profile)
    if identity:  # a user's tree: rebuilt trees get new keys (Debian's keys unchanged)
        material["tree"] = identity
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


# ---- names the kernel already uses ----------------------------------------------------


@cache
def kernel_module_names(modules_dir: Path) -> frozenset[str]:
    """Names of the kernel's own modules, loadable or built in (modules.order,
    modules.builtin), normalised like KBUILD_MODNAME (`-` -> `_`)."""
    names: set[str] = set()
    for listing in ("modules.order", "modules.builtin"):
        path = modules_dir / listing
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            base = line.strip().rsplit("/", 1)[-1]
            if base.endswith(".ko"):
                names.add(base[: -len(".ko")].replace("-", "_"))
    return frozenset(names)


def check_names_free(names: Sequence[str], profile: KernelProfile) -> None:
    """A scenario module named like one of the kernel's (`ext4`, `loop`) would be
    refused as already loaded, or shadow the real one for modprobe."""
    taken = kernel_module_names(profile.modules_dir)
    for name in names:
        if name in taken:
            raise UsageError(f"module {name}: {profile.name} has a module of that name; rename it")


# ---- building -------------------------------------------------------------------------


@dataclass
class BuildResult:
    """What a build did: a checked .ko per module, which were built now and which came
    from the cache, and a directory holding the rendered sources (for bug reports)."""

    modules: dict[str, Path] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)  # built now only
    log: Path | None = None  # of the make call, if there was one
    sources: Path | None = None


def _builds_dir(cache_dir: Path | None) -> Path:
    root = cache_dir if cache_dir is not None else kernels.cache_root() / "builds"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _failure(log: str, names: Sequence[str], profile: KernelProfile, log_path: Path) -> str:
    """The one-line error of a failed build; a user's tree whose own files broke the
    build (no error about our modules) also gets the recipe's path."""
    own = [n for n in names if lines_about(log, n, "error")][:1]
    line = failure_line(log, names)
    text = f"building {', '.join(own or names)} for {profile.name} failed: {line}"
    hint = f"; recipe: {RECIPE}" if not own and profile.name.startswith("dir:") else ""
    return f"{text} (build log: {log_path}{hint})"


def build_sources(
    sources: dict[str, str],
    profile: KernelProfile,
    livepatch: Sequence[str] = (),
    *,
    cache_dir: Path | None = None,
    make: MakeRunner = run_make,
    compiler: str | None = None,
    jobs: int | None = None,
) -> BuildResult:
    """Build rendered sources ({name: C}) against `profile`, reusing cached .ko files.

    `livepatch` names the modules that must carry `livepatch=Y`.  `cache_dir` defaults
    to `cache_root()/builds`; `make` and `compiler` (a `--version` line) can be injected
    so the cache logic is testable without a kernel tree."""
    if jobs is not None and jobs < 1:
        raise UsageError(f"-j {jobs}: the number of parallel jobs must be at least 1")
    builds = _builds_dir(cache_dir)
    build_cache.sweep(builds)
    cc = compiler_for(profile)
    root = buildroot.root_for(profile) if compiler is None else None
    compiler = compiler if compiler is not None else compiler_id(cc, root)
    result = BuildResult()
    missing: dict[str, str] = {}  # name -> key
    for name in sorted(sources):
        key = module_key(name, sources[name], profile, compiler)
        ko = build_cache.lookup(builds, key, name)
        if ko is not None and _usable(ko, name, profile, name in livepatch):
            result.modules[name] = ko
            result.cached.append(name)
        else:
            if ko is not None:
                build_cache.invalidate(builds, key)
            missing[name] = key
    if missing:
        _build_missing(
            sources, missing, set(livepatch), profile, builds, make, cc, root, jobs, result
        )
    return result


def _usable(ko: Path, name: str, profile: KernelProfile, livepatch: bool) -> bool:
    """A verified entry still passes the .ko checks (cheap; entries written by an
    older harness, or tampered with together with their manifest, may not)."""
    try:
        check_ko(ko, name, profile, livepatch)
    except HarnessError:
        return False
    return True


def _build_missing(
    sources: dict[str, str],
    missing: dict[str, str],
    livepatch: set[str],
    profile: KernelProfile,
    builds: Path,
    make: MakeRunner,
    cc: str,
    root: Path | None,
    jobs: int | None,
    result: BuildResult,
) -> None:
    """One make call for every missing module, then move each .ko into its key dir."""
    if not (profile.build_dir / "Makefile").is_file():
        raise HarnessError(f"{profile.name}: no kernel build tree at {profile.build_dir}")
    work = build_cache.work_dir(builds)
    try:
        write_sources({n: sources[n] for n in missing}, work)
        jobs = jobs or os.cpu_count() or 1
        check_includes({n: sources[n] for n in missing}, profile, work, cc, jobs, root, make)
        argv = make_command(profile, work, cc, jobs, root)
        try:
            status, log = make(argv, work)
        except BuildTimeout as exc:
            raise BuildTimeout(f"building {', '.join(missing)} for {profile.name}: {exc}") from None
        (work / LOG).write_text(f"$ {' '.join(argv)}\n{log}")
        if status != 0:
            failed = builds / "failed"
            failed.mkdir(exist_ok=True)
            batch = hashlib.sha256(" ".join(sorted(missing.values())).encode()).hexdigest()
            log_path = failed / f"{batch[:16]}.log"
            with contextlib.suppress(OSError):
                shutil.copyfile(work / LOG, log_path)
            mine = body_error(log, {n: sources[n] for n in missing})
            if mine is not None:
                raise UsageError(f"{mine} (building for {profile.name}; log: {log_path})")
            raise HarnessError(_failure(log, list(missing), profile, log_path))
        for name, key in missing.items():
            built_ko = work / f"{name}.ko"
            if not built_ko.is_file():
                raise HarnessError(f"building {name} for {profile.name}: make made no {name}.ko")
            try:
                if klprela.in_source(sources[name]):
                    klprela.finish(built_ko)
                check_ko(built_ko, name, profile, name in livepatch)
            except BadModule as exc:
                raise HarnessError(f"building {name} for {profile.name}: {exc}") from None
            result.modules[name] = build_cache.publish(builds, key, name, work)
            result.built.append(name)
            warnings = lines_about(log, name, "warning")
            if warnings:
                result.warnings[name] = warnings
        result.log = result.modules[next(iter(missing))].parent / LOG
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_modules(
    modules: Scenario | Sequence[Module],
    profile: KernelProfile,
    *,
    cache_dir: Path | None = None,
    make: MakeRunner = run_make,
    compiler: str | None = None,
    jobs: int | None = None,
) -> BuildResult:
    """Build a scenario's (or a list of) modules; `.modules` maps name -> checked .ko."""
    mods = modules.modules if isinstance(modules, Scenario) else tuple(modules)
    sources = render_sources(mods)
    check_names_free(list(sources), profile)
    livepatch = [m.name for m in mods if isinstance(m, PatchModule)]
    result = build_sources(
        sources, profile, livepatch, cache_dir=cache_dir, make=make, compiler=compiler, jobs=jobs
    )
    result.sources = _source_dir(_builds_dir(cache_dir), sources)
    return result


def _source_dir(builds: Path, sources: dict[str, str]) -> Path:
    """builds/src/<hash of the set>/: the set's `<name>.c` files and Kbuild.  Written
    in a temporary dir and renamed, and rewritten if a file no longer matches."""
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()
    directory = builds / "src" / digest[:32]
    if _sources_match(directory, sources):
        return directory
    stage = make_temp_dir(build_cache.tmp_dir(builds), "stage")
    write_sources(sources, stage)
    if directory.exists():
        discard(directory, build_cache.tmp_dir(builds))
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        stage.rename(directory)
    except OSError:  # another process published the same set meanwhile
        shutil.rmtree(stage, ignore_errors=True)
    return directory


def _sources_match(directory: Path, sources: dict[str, str]) -> bool:
    try:
        return (directory / KBUILD).read_text() == render_kbuild(list(sources)) and all(
            (directory / f"{name}.c").read_text() == text for name, text in sources.items()
        )
    except (OSError, UnicodeDecodeError):
        return False
