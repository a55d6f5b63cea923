"""Build rendered modules against a kernel profile, with a cache shared by every checkout.

Each module is cached on its own, under `cache_root()/builds/<key>/`, where the key is
the sha256 of its rendered source, the Kbuild flags, the profile (name, release,
vermagic) and the compiler's `--version`: an unchanged module is never rebuilt, however
many scenarios use it.  What the cache lacks is built in ONE `make -C <build_dir> M=<dir>
-jN modules` call, since kbuild's fixed cost (reading the kernel's Makefiles, modpost)
dominates a small module's build time.

Every `.ko` handed out has been checked: its vermagic is the profile's (so the guest will
load it) and a livepatch module carries `livepatch=Y` (so the kernel treats it as one).
A failed build raises a one-line HarnessError naming the module and the saved log.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness import kernels
from harness.errors import HarnessError, UsageError
from harness.kernels import KernelProfile
from harness.modules.render import KBUILD, render_kbuild, render_sources, write_sources
from harness.scenario.types import Module, PatchModule, Scenario

# Bump when the cache layout or anything else not in the key changes what a build makes.
CACHE_FORMAT = 1
LOG = "build.log"

# (argv, cwd) -> (exit status, combined stdout/stderr)
MakeRunner = Callable[[Sequence[str], Path], tuple[int, str]]


def run_make(argv: Sequence[str], cwd: Path) -> tuple[int, str]:
    """Run make, capturing stdout and stderr together (the build log)."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            check=False,
        )
    except FileNotFoundError as exc:
        raise HarnessError(f"cannot run {argv[0]}: {exc.strerror} (install make)") from None
    return proc.returncode, proc.stdout


def compiler_for(profile: KernelProfile) -> str:
    """The C compiler the profile's kernel was built with (CONFIG_CC_VERSION_TEXT's
    first word, e.g. `x86_64-linux-gnu-gcc-12`) if installed, else `gcc`.  Using the
    same one avoids kbuild's "compiler differs" warning and plugin/flag mismatches."""
    try:
        text = kernels.read_config(profile.config).get("CONFIG_CC_VERSION_TEXT", "")
    except OSError:
        text = ""
    words = text.strip('"').split()
    if words and shutil.which(words[0]):
        return words[0]
    return "gcc"


@cache
def compiler_id(cc: str) -> str:
    """First line of `cc --version`: part of the cache key."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise HarnessError(f"C compiler {cc} not found (install gcc)") from None
    return (out.stdout.splitlines() or [cc])[0]


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
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


# ---- .ko checks -----------------------------------------------------------------------


def read_modinfo(path: Path) -> dict[str, list[str]]:
    """The `.modinfo` section of a 64-bit little-endian ELF module, as modinfo(8) shows
    it (a key may repeat, e.g. `parm`).  Parsed here so checking a .ko costs no process."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise HarnessError(f"{path}: not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + index * shentsize
        )
        return name, offset, size

    _, str_off, str_size = section(shstrndx)
    names = data[str_off : str_off + str_size]
    info: dict[str, list[str]] = {}
    for index in range(shnum):
        name_off, offset, size = section(index)
        if names[name_off : names.index(b"\0", name_off)] != b".modinfo":
            continue
        for entry in data[offset : offset + size].split(b"\0"):
            key, sep, value = entry.decode(errors="replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    return info


def check_ko(path: Path, name: str, profile: KernelProfile, livepatch: bool) -> None:
    """Refuse a .ko the profile's kernel would reject or not treat as intended."""
    info = read_modinfo(path)
    vermagic = " ".join(info.get("vermagic", [""])[0].split())
    if vermagic != profile.vermagic:
        raise HarnessError(
            f"{name}: vermagic {vermagic!r} is not {profile.name}'s {profile.vermagic!r} ({path})"
        )
    if livepatch and info.get("livepatch") != ["Y"]:
        raise HarnessError(f"{name}: livepatch module without `livepatch: Y` in modinfo ({path})")


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


def _lines_about(log: str, name: str, word: str) -> list[str]:
    """Compiler/modpost lines about module `name` containing `word` (error, warning)."""
    pattern = re.compile(rf"(^|[/\s\[]){re.escape(name)}\.(c|o|ko|mod\.c)\b")
    return [line for line in log.splitlines() if word in line.lower() and pattern.search(line)]


def _failure(log: str, names: Sequence[str], profile: KernelProfile, log_path: Path) -> str:
    for name in names:
        errors = _lines_about(log, name, "error")
        if errors:
            first = errors[0].strip()
            first = re.sub(r"^\S*/(?=" + re.escape(name) + r"\.)", "", first)
            return f"building {name} for {profile.name} failed: {first} (build log: {log_path})"
    tail = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "no output")
    return f"building {', '.join(names)} for {profile.name} failed: {tail} (build log: {log_path})"


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
    builds = _builds_dir(cache_dir)
    cc = compiler_for(profile)
    compiler = compiler if compiler is not None else compiler_id(cc)
    result = BuildResult()
    missing: dict[str, str] = {}  # name -> key
    for name in sorted(sources):
        key = module_key(name, sources[name], profile, compiler)
        ko = builds / key / f"{name}.ko"
        if ko.is_file():
            result.modules[name] = ko
            result.cached.append(name)
        else:
            missing[name] = key
    for name in result.cached:  # cheap, and a cache entry may have been tampered with
        check_ko(result.modules[name], name, profile, name in livepatch)
    if missing:
        _build_missing(sources, missing, set(livepatch), profile, builds, make, cc, jobs, result)
    return result


def _build_missing(
    sources: dict[str, str],
    missing: dict[str, str],
    livepatch: set[str],
    profile: KernelProfile,
    builds: Path,
    make: MakeRunner,
    cc: str,
    jobs: int | None,
    result: BuildResult,
) -> None:
    """One make call for every missing module, then move each .ko into its key dir."""
    if not (profile.build_dir / "Makefile").is_file():
        raise HarnessError(f"{profile.name}: no kernel build tree at {profile.build_dir}")
    work_root = builds / "tmp"
    work_root.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=work_root))
    try:
        write_sources({n: sources[n] for n in missing}, work)
        argv = [
            "make",
            "-C",
            str(profile.build_dir),
            f"M={work}",
            f"CC={cc}",
            f"-j{jobs or os.cpu_count() or 1}",
            "modules",
        ]
        status, log = make(argv, work)
        (work / LOG).write_text(f"$ {' '.join(argv)}\n{log}")
        if status != 0:
            failed = builds / "failed"
            failed.mkdir(exist_ok=True)
            batch = hashlib.sha256(" ".join(sorted(missing.values())).encode()).hexdigest()
            log_path = failed / f"{batch[:16]}.log"
            shutil.copyfile(work / LOG, log_path)
            raise HarnessError(_failure(log, list(missing), profile, log_path))
        for name, key in missing.items():
            built_ko = work / f"{name}.ko"
            if not built_ko.is_file():
                raise HarnessError(f"building {name} for {profile.name}: make made no {name}.ko")
            check_ko(built_ko, name, profile, name in livepatch)
            result.modules[name] = _store(builds, key, name, work)
            result.built.append(name)
            warnings = _lines_about(log, name, "warning")
            if warnings:
                result.warnings[name] = warnings
        result.log = result.modules[next(iter(missing))].parent / LOG
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _store(builds: Path, key: str, name: str, work: Path) -> Path:
    """Publish one module's .ko, source and the batch's log under builds/<key>/.

    Staged in a private dir and renamed into place, so a concurrent build of the same
    key never exposes a half-written entry; if another process won, its copy is used."""
    final = builds / key
    stage = Path(tempfile.mkdtemp(prefix=f"{key[:16]}-", dir=work.parent))
    for filename in (f"{name}.ko", f"{name}.c", LOG):
        shutil.copyfile(work / filename, stage / filename)
    try:
        stage.rename(final)
    except OSError:
        shutil.rmtree(stage, ignore_errors=True)
        if not (final / f"{name}.ko").is_file():
            raise HarnessError(f"cannot store {name} in the build cache at {final}") from None
    return final / f"{name}.ko"


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
    """builds/src/<hash of the set>/: the set's `<name>.c` files and Kbuild, written once."""
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()
    directory = builds / "src" / digest[:32]
    if not (directory / KBUILD).is_file():
        write_sources(sources, directory)
    return directory
