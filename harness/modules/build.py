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

make runs in a process group of its own, killed as a whole if the harness is
interrupted or the build outlasts BUILD_TIMEOUT, and gets SIGTERM (which GNU make
passes on to its children) if the harness dies without a chance to clean up.  The
compiler stops at MAX_ERRORS errors: a body of thousands of bad statements fails in
seconds, not hours.

A build is confined to what a body may use: the kernel's headers and the files beside
its scenario.  Before a module with a scenario's own code is compiled, kbuild
preprocesses it (`make <name>.i`, the same flags) and the dependency list the
preprocessor writes (`.<name>.i.cmd`, computed includes included) is checked: a body
that includes anything else of the host (`#include "/etc/shadow"`) is refused in one
line naming the include, before the compiler could quote it in a build log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.files import discard, make_temp_dir
from harness.host.reaper import pdeathsig_preexec, wait_group_gone
from harness.kernel import buildroot
from harness.kernel import profiles as kernels
from harness.kernel.kconfig import RECIPE
from harness.kernel.profiles import KernelProfile
from harness.modules import cache as build_cache
from harness.modules import klprela
from harness.modules.bodies import body_error, body_files
from harness.modules.cache import LOG
from harness.modules.ko import BadModule, check_ko, read_modinfo
from harness.modules.render import KBUILD, render_kbuild, render_sources, write_sources
from harness.scenario.types import Module, PatchModule, Scenario

__all__ = ["BuildResult", "build_modules", "build_sources", "check_ko", "read_modinfo"]

# Bump when the cache layout or anything else not in the key changes what a build makes.
CACHE_FORMAT = 2  # 2: entries carry a manifest of checksums

# (argv, cwd) -> (exit status, combined stdout/stderr)
MakeRunner = Callable[[Sequence[str], Path], tuple[int, str]]
BUILD_TIMEOUT = 900.0  # seconds for one make call (60 modules take ~1 min on 2 CPUs)
MAX_ERRORS = 50  # the compiler's -fmax-errors


class BuildTimeout(HarnessError):
    """make did not finish in time; it and every compiler it started were killed."""


def run_make(argv: Sequence[str], cwd: Path, timeout: float | None = None) -> tuple[int, str]:
    """Run make, capturing stdout and stderr together (the build log).

    In its own process group, so an interrupted build (Ctrl-C, SIGTERM) is killed
    with every compiler it started; SIGTERM on the harness's death (GNU make passes
    it on to its children), so even a SIGKILLed harness leaves no make behind."""
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            process_group=0,
            preexec_fn=pdeathsig_preexec(signal.SIGTERM),
        )
    except FileNotFoundError as exc:
        raise HarnessError(f"cannot run {argv[0]}: {exc.strerror} (install make)") from None
    limit = BUILD_TIMEOUT if timeout is None else timeout
    try:
        out, _ = proc.communicate(timeout=limit)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_group_gone(proc.pid)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BuildTimeout(
                f"`{' '.join(argv[:1])} ... {argv[-1]}` did not finish in {limit:.0f} s: "
                "stopped, with every compiler it started"
            ) from None
        raise
    return proc.returncode, out


def compiler_for(profile: KernelProfile) -> str:
    """The C compiler the profile's kernel was built with (CONFIG_CC_VERSION_TEXT's
    first word, e.g. `x86_64-linux-gnu-gcc-12`) if installed, else `gcc`.  Using the
    same one avoids kbuild's "compiler differs" warning and plugin/flag mismatches.
    A kernel built in a build root (harness.kernel.buildroot) gets its own, from the root."""
    in_root = buildroot.cc_for(profile)
    if in_root is not None:
        return in_root
    try:
        text = kernels.read_config(profile.config).get("CONFIG_CC_VERSION_TEXT", "")
    except OSError:
        text = ""
    words = text.strip('"').split()
    if words and shutil.which(words[0]):
        return words[0]
    return "gcc"


@cache
def compiler_id(cc: str, root: Path | None = None) -> str:
    """First line of `cc --version` (run in build root `root`, if given): part of the
    cache key."""
    argv = [cc, "--version"]
    if root is not None:
        argv = buildroot.wrap(root, argv, Path("/"))
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise HarnessError(f"C compiler {cc} not found (install gcc)") from None
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
        raise HarnessError(f"C compiler {cc} does not run: {tail[0]}")
    return (out.stdout.splitlines() or [cc])[0]


def make_command(
    profile: KernelProfile,
    work: Path,
    cc: str,
    jobs: int,
    root: Path | None,
    targets: Sequence[str] = ("modules",),
) -> list[str]:
    """`make ... modules` building the modules in `work` against `profile` (or other
    kbuild `targets`), in build root `root` if the profile needs one (its tree
    read-only, `work` writable)."""
    argv = ["make", "-C", str(profile.build_dir), f"M={work}", f"CC={cc}", f"-j{jobs}",
            f"KCFLAGS=-fmax-errors={MAX_ERRORS}", *targets]  # fmt: skip
    if root is None:
        return argv
    named = profile.name.startswith("dir:")
    tree = profile.build_dir if named else kernels.cache_root() / "kernels" / profile.name
    return buildroot.wrap(root, argv, work, read_only=[tree], writable=[work])


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


def _lines_about(log: str, name: str, word: str) -> list[str]:
    """Compiler/modpost lines about module `name` containing `word` (error, warning)."""
    pattern = re.compile(rf"(^|[/\s\[]){re.escape(name)}\.(c|o|ko|mod\.c)\b")
    return [
        line
        for line in log.splitlines()
        if word in line.lower() and pattern.search(line) and not _MAKE_NOISE.search(line)
    ]


# make's own bookkeeping ("Leaving directory", "*** [target] Error 2"): never the
# reason a build failed, only the echo of it.
_MAKE_NOISE = re.compile(r"make(\[\d+\])?: (Entering|Leaving) directory|\*\*\* \[.*\] Error \d+$")
_ERROR = re.compile(r"(?i)\berror\b|\*\*\*|No rule to make target")


def failure_line(log: str, names: Sequence[str]) -> str:
    """The line of a failed build's log that says why: a compiler error about one of
    `names`, else the first error line (a broken kernel tree: "ERROR: Kernel
    configuration is invalid", a missing header), else the last line that is not
    make's "Leaving directory"."""
    for name in names:
        errors = _lines_about(log, name, "error")
        if errors:
            first = errors[0].strip()
            return re.sub(r"^\S*/(?=" + re.escape(name) + r"\.)", "", first)
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not _MAKE_NOISE.search(ln)]
    errors = [ln for ln in useful if _ERROR.search(ln)]
    if errors:
        return errors[0]
    return useful[-1] if useful else (lines[-1] if lines else "no output")


def _failure(log: str, names: Sequence[str], profile: KernelProfile, log_path: Path) -> str:
    """The one-line error of a failed build; a user's tree whose own files broke the
    build (no error about our modules) also gets the recipe's path."""
    own = [n for n in names if _lines_about(log, n, "error")][:1]
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
            warnings = _lines_about(log, name, "warning")
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


# ---- confinement: what a body may include ---------------------------------------------


def check_includes(
    sources: dict[str, str],
    profile: KernelProfile,
    work: Path,
    cc: str,
    jobs: int,
    root: Path | None,
    make: MakeRunner = run_make,
) -> None:
    """Refuse (UsageError) a module with a scenario's own code whose preprocessing
    reads a file outside the kernel's headers, the build's directory and the
    scenario's directory.  Modules of generated code only are not preprocessed."""
    bodies = {name: body_files({name: text}) for name, text in sources.items()}
    names = [name for name, files in bodies.items() if files]
    if not names:
        return
    argv = make_command(profile, work, cc, jobs, root, [f"{name}.i" for name in names])
    status, log = make(argv, work)  # its log is not kept: it may quote what it read
    allowed = _allowed_roots(profile, work, cc, root)
    for name in names:
        beside = [Path(f).resolve().parent for f in bodies[name]]
        deps = _dependencies(work, name, profile.build_dir)
        if deps is None:  # it failed before the preprocessor wrote its list
            mine = body_error(log, {name: sources[name]})
            where = sorted(bodies[name])[0]
            raise UsageError(mine or f"{where}: a body of {name} does not preprocess "
                             "(its log is not kept: it may quote other files)")  # fmt: skip
        for dep in deps:
            if not any(dep.is_relative_to(top) for top in [*allowed, *beside]):
                raise UsageError(
                    f"{sorted(bodies[name])[0]}: a body of {name} includes {dep}: a body may "
                    "include kernel headers and files beside its scenario, nothing else"
                )
        text = _read_quietly(work / f"{name}.i")
        if ".incbin" in text:
            raise UsageError(f"{sorted(bodies[name])[0]}: a body of {name} embeds a file "
                             "(.incbin): a body may not read files of the host")  # fmt: skip
    del status  # a failed preprocessor left its list: the build proper says what failed


def _read_quietly(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _dependencies(work: Path, name: str, build_dir: Path) -> list[Path] | None:
    """The files `<name>.i`'s preprocessing read, resolved (relative ones are the
    build tree's): kbuild's `.<name>.i.cmd` (fixdep's `deps_<target> := \\` block)
    after a success, the preprocessor's own `.<name>.i.d` (`target: deps`) after a
    failure; None if there is neither."""
    cmd_file, dep_file = work / f".{name}.i.cmd", work / f".{name}.i.d"
    if cmd_file.is_file():
        text = _read_quietly(cmd_file).partition("\ndeps_")[2].partition(":=")[2]
        text = text.split("\n\n", 1)[0]
    elif dep_file.is_file():
        text = _read_quietly(dep_file).partition(":")[2]
    else:
        return None
    deps: list[Path] = []
    for entry in text.replace("\\\n", " ").split():
        if entry == "\\" or entry.startswith("$(") or entry.endswith(")"):
            continue  # $(wildcard include/config/...): kconfig symbols, not files
        path = Path(entry)
        deps.append((path if path.is_absolute() else build_dir / path).resolve())
    return deps


def _allowed_roots(profile: KernelProfile, work: Path, cc: str, root: Path | None) -> list[Path]:
    """Where a module's includes may come from: the kernel tree (a Debian profile's
    unpacked headers, or a user's tree and its source), the build's own directory,
    and the compiler's own headers (stdarg.h)."""
    tops = [profile.build_dir.resolve(), work.resolve()]
    source = profile.build_dir / "source"
    if source.is_symlink() or source.is_dir():
        tops.append(source.resolve())
    unpacked = kernels.cache_root() / "kernels" / profile.name
    if unpacked.is_dir():
        tops.append(unpacked.resolve())
    tops.append(Path(compiler_include(cc, root)))
    return tops


@cache
def compiler_include(cc: str, root: Path | None = None) -> str:
    """The compiler's own header directory (`cc -print-file-name=include`)."""
    argv = [cc, "-print-file-name=include"]
    if root is not None:
        argv = buildroot.wrap(root, argv, Path("/"))
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "/nonexistent"
    found = out.stdout.strip()
    return found if found.startswith("/") else "/nonexistent"
