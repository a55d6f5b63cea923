"""What a body may include: a build is confined to the kernel's headers and the files
beside its scenario.

Before a module with a scenario's own code is compiled, kbuild preprocesses it (`make
<name>.i`, the same flags) and the dependency list the preprocessor writes
(`.<name>.i.cmd`, computed includes included) is checked: a body that includes anything
else of the host (`#include "/etc/shadow"`) is refused in one line naming the include,
before the compiler could quote it in a build log.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from harness.kernel import profiles as kernels
from harness.kernel.profiles import KernelProfile
from harness.modules.bodies import body_error, body_files
from harness.modules.kbuild import MakeRunner, compiler_include, make_command, run_make

__all__ = ["check_includes"]


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
