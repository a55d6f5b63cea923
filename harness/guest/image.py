"""Build the guest's initramfs for a kernel profile from the host's Debian packages.

The guest runs the host's own binaries (Debian 12: busybox, bash, coreutils, kmod,
dropbear, ...) with the libraries `ldd` finds, the profile's virtio-net modules and
`images/init`.  Everything lands in one `usr/bin` and `usr/lib` (with `bin`, `sbin`,
`lib` symlinks), so dropbear's fixed `PATH=/usr/bin:/bin` finds every tool.

Images are cached in `<cache>/images/<profile>-<hash>.cpio.gz`, where the hash
covers every input: the init script and rootfs overlay, the package versions, the
list of files copied (with size and mtime), the modules and the kernel release.
Planning an image (which is what `setup` does when everything is warm) only runs
a handful of quick `dpkg -L`/`ldd`/`modinfo` calls.

An image is built in a temporary directory, renamed into place, and its sha256 is
written beside it (`<image>.sha256`); an image that no longer matches (truncated by
a full disk, a killed copy) is rebuilt instead of costing a boot timeout.

`python -m harness.guest.image PROFILE...` builds images by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.files import atomic_write, cached_file, file_safe, sum_path
from harness.guest.cpio import write_initramfs
from harness.kernel.profiles import DEFAULT_PROFILE, KernelProfile, cache_root, load_profile

IMAGE_FORMAT = 1  # bump when the layout changes in a way the inputs below miss
IMAGES_SRC = Path(__file__).resolve().parents[2] / "images"

# Debian package -> the programs the guest takes from it (None: all it ships).
PROGRAMS: dict[str, tuple[str, ...] | None] = {
    "busybox-static": ("busybox",),  # the basics: sh, mount, ip, ...
    "bash": ("bash",),
    "coreutils": None,
    "grep": ("grep",),
    "sed": ("sed",),
    "diffutils": ("diff", "cmp"),
    "util-linux": ("dmesg", "setsid", "flock", "taskset", "chrt", "nsenter"),
    "procps": ("sysctl", "ps", "pgrep", "pkill", "free", "top", "uptime", "watch"),
    # busybox insmod retries every failed load with init_module, so a failing
    # livepatch load would run twice: the guest uses kmod's tools.
    "kmod": ("kmod",),
    "libc-bin": ("getconf",),  # upstream's test-syscall.sh (6.12) asks for the CPU count
    "dropbear-bin": ("dropbear", "dropbearkey"),
}
KMOD_TOOLS = ("insmod", "modprobe", "rmmod", "lsmod", "modinfo", "depmod")
# virtio-net (SSH) and virtio-console (the command channel) with their PCI transport;
# their dependencies are added from modinfo.
NET_MODULES = ("virtio_pci", "virtio_net", "virtio_console")
TERMINFO = ("dumb", "linux", "vt100", "vt220", "xterm", "xterm-256color", "screen", "tmux")
TERMINFO_DIRS = (Path("/etc/terminfo"), Path("/lib/terminfo"), Path("/usr/share/terminfo"))
TOP_LINKS = {"bin": "usr/bin", "sbin": "usr/bin", "usr/sbin": "bin", "lib": "usr/lib",
             "lib64": "usr/lib64"}  # fmt: skip
EMPTY_DIRS = ("proc", "sys", "dev", "tmp", "run", "mnt", "root/.ssh", "etc/dropbear", "var/log")
# Programs of the harness's own, built static from images/ (see each file for why).
HELPERS = {
    "klp-load.c": "usr/bin/klp-load",
    "klp-bpf.c": "usr/bin/klp-bpf",
    "klp-getpid.c": "usr/bin/klp-getpid",
}
_BIN_PATH = re.compile(r"^/(?:usr/)?s?bin/[^/]+$")
_KO_SUFFIX = re.compile(r"\.ko(?:\.xz|\.zst|\.gz)?$")


@dataclass
class ImagePlan:
    """Everything that goes into one profile's image, before anything is copied."""

    release: str
    modules_dir: Path  # the profile's /lib/modules/<release>
    versions: dict[str, str]  # package -> version
    files: dict[str, Path] = field(default_factory=dict)  # image path -> host file
    links: dict[str, str] = field(default_factory=dict)  # image path -> link target
    modules: list[str] = field(default_factory=list)  # paths under modules_dir

    def input_hash(self) -> str:
        """Hash of every input; an image with this hash needs no rebuild."""
        overlay = sorted(p for p in (IMAGES_SRC / "rootfs").rglob("*") if p.is_file())
        data = {
            "format": IMAGE_FORMAT,
            "release": self.release,
            "versions": self.versions,
            "files": {dest: _stat_id(src) for dest, src in sorted(self.files.items())},
            "links": dict(sorted(self.links.items())),
            "modules": {m: _stat_id(self.modules_dir / m) for m in self.modules},
            "init": _sha(IMAGES_SRC / "init"),
            "helpers": {name: _sha(IMAGES_SRC / name) for name in HELPERS},
            "overlay": {str(p.relative_to(IMAGES_SRC)): _sha(p) for p in overlay},
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _stat_id(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(cmd: list[str], check: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        raise HarnessError(f"`{' '.join(cmd)}` failed: {tail[0]}")
    return proc.stdout


# ---- planning -------------------------------------------------------------------------


def package_versions(packages: list[str]) -> dict[str, str]:
    out = _run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *packages], check=False)
    versions = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    missing = [p for p in packages if p not in versions]
    if missing:
        raise HarnessError(f"host packages missing: {' '.join(missing)} (run `make setup`)")
    return versions


def package_programs(package: str, wanted: tuple[str, ...] | None) -> dict[str, Path]:
    """name -> host path of the programs `package` ships (all, or those `wanted`)."""
    found: dict[str, Path] = {}
    for line in _run(["dpkg", "-L", package]).splitlines():
        path = Path(line)
        wanted_here = _BIN_PATH.match(line) and (wanted is None or path.name in wanted)
        if wanted_here and path.exists() and not path.is_dir():
            found.setdefault(path.name, path)
    missing = set(wanted or ()) - set(found)
    if missing:
        raise HarnessError(f"{package} lacks {', '.join(sorted(missing))}")
    return found


def _ldd(programs: list[Path]) -> dict[str, list[str]]:
    """program -> libraries it loads, by one `ldd` run."""
    needed: dict[str, list[str]] = {str(p): [] for p in programs}
    current = str(programs[0]) if len(programs) == 1 else ""
    for line in _run(["ldd", *map(str, programs)], check=False).splitlines():
        if not line.startswith("\t") and line.endswith(":"):
            current = line[:-1]
        elif match := re.search(r"(?:=> )?(/\S+) \(0x", line):
            needed.setdefault(current, []).append(match.group(1))
    return needed


def shared_libraries(programs: list[Path]) -> dict[str, Path]:
    """image path -> host file of every library `ldd` says the programs load.

    ldd takes ~4 ms per program, so its answers are cached by program size and
    mtime: a warm `setup` runs no ldd at all."""
    cache_file = images_dir() / "ldd-cache.json"
    cache = _read_ldd_cache(cache_file)
    key = {str(p): _stat_id(p) for p in programs}
    stale = [p for p in programs if cache.get(str(p), {}).get("stat") != key[str(p)]]
    if stale:
        for name, found in _ldd(stale).items():
            cache[name] = {"stat": key[name], "libs": found}
        atomic_write(cache_file, json.dumps(cache, indent=0, sort_keys=True))
    libs: dict[str, Path] = {}
    for program in programs:
        libs_of = cache[str(program)]["libs"]
        assert isinstance(libs_of, list)
        for lib in libs_of:
            host = Path(lib)
            dest = host.parent.resolve() / host.name  # /lib/x -> /usr/lib/x
            libs[str(dest).lstrip("/")] = host
    return libs


def _read_ldd_cache(path: Path) -> dict[str, dict[str, object]]:
    """The ldd cache, keeping only well-formed entries (a damaged file or entry is
    just asked again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        name: entry
        for name, entry in data.items()
        if isinstance(entry, dict)
        and isinstance(entry.get("stat"), list)
        and isinstance(entry.get("libs"), list)
        and all(isinstance(lib, str) for lib in entry["libs"])
    }


def terminfo_files() -> dict[str, Path]:
    """Terminal descriptions for bash's line editing on the console and over SSH."""
    files: dict[str, Path] = {}
    for name in TERMINFO:
        for base in TERMINFO_DIRS:
            entry = base / name[0] / name
            if entry.exists():
                files[f"usr/share/terminfo/{name[0]}/{name}"] = entry
                break
    return files


def _module_name(path: str) -> str:
    return _KO_SUFFIX.sub("", Path(path).name).replace("-", "_")


def module_closure(modules_dir: Path, roots: tuple[str, ...]) -> list[str]:
    """Paths (under modules_dir) of the `roots` modules and what they depend on,
    leaving out what the kernel has built in."""
    available = {
        _module_name(p.name): str(p.relative_to(modules_dir))
        for p in (modules_dir / "kernel").rglob("*.ko*")
    }
    builtin_file = modules_dir / "modules.builtin"
    builtin_text = builtin_file.read_text() if builtin_file.exists() else ""
    builtin = {_module_name(line) for line in builtin_text.split()}
    chosen: dict[str, str] = {}
    pending = list(roots)
    while pending:
        name = pending.pop().replace("-", "_")
        if name in chosen or name in builtin:
            continue
        if name not in available:
            raise HarnessError(f"module {name} not found under {modules_dir}")
        chosen[name] = available[name]
        depends = _run(["modinfo", "-F", "depends", str(modules_dir / chosen[name])]).strip()
        pending.extend(d for d in depends.split(",") if d)
    return sorted(chosen.values())


def plan_image(profile: KernelProfile) -> ImagePlan:
    """Decide the image's contents for a profile (cheap: no copying)."""
    plan = ImagePlan(profile.release, profile.modules_dir, package_versions(list(PROGRAMS)))
    programs: dict[str, Path] = {}
    for package, wanted in PROGRAMS.items():
        programs.update(package_programs(package, wanted))
    plan.files.update({f"usr/bin/{name}": path for name, path in programs.items()})
    plan.files.update(shared_libraries(sorted(set(programs.values()))))
    plan.files.update(terminfo_files())
    plan.links.update({f"usr/bin/{tool}": "kmod" for tool in KMOD_TOOLS})
    applets = _run([str(programs["busybox"]), "--list"]).split()
    for applet in applets:
        dest = f"usr/bin/{applet}"
        if dest not in plan.files and dest not in plan.links:
            plan.links[dest] = "busybox"
    # Debian's busybox prefers its own applets to PATH when it is the shell, so a
    # `#!/bin/sh` script would get busybox insmod: sh is bash instead.
    plan.links["usr/bin/sh"] = "bash"
    plan.links.update(TOP_LINKS)
    plan.modules = module_closure(profile.modules_dir, NET_MODULES)
    return plan


# ---- building -------------------------------------------------------------------------


def _copy(src: Path, dest: Path, mode: int | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, mode if mode is not None else src.stat().st_mode & 0o7777)


def stage(plan: ImagePlan, root: Path) -> None:
    """Lay the image out in directory `root`."""
    for dest, src in plan.files.items():
        _copy(src, root / dest, 0o755 if dest.startswith("usr/bin/") else None)
    for dest, target in plan.links.items():
        link = root / dest
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    for name in EMPTY_DIRS:
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "root").chmod(0o700)
    (root / "root/.ssh").chmod(0o700)
    (root / "tmp").chmod(0o1777)
    for src in sorted((IMAGES_SRC / "rootfs").rglob("*")):
        if src.is_file():
            _copy(src, root / src.relative_to(IMAGES_SRC / "rootfs"), 0o644)
    _copy(IMAGES_SRC / "init", root / "init", 0o755)
    _build_helpers(root)
    _stage_modules(plan, root / "usr/lib/modules" / plan.release)


def _build_helpers(root: Path) -> None:
    """Compile the harness's guest programs, static: the guest has no libc of its
    own to spare them the dynamic loader, whose cost under TCG is why they exist."""
    compiler = shutil.which("gcc-12") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise HarnessError("no C compiler for the guest's helper programs (run `make setup`)")
    for source, dest in HELPERS.items():
        out = root / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        _run([compiler, "-static", "-O2", "-Wall", "-o", str(out), str(IMAGES_SRC / source)])


def _stage_modules(plan: ImagePlan, dest: Path) -> None:
    """The chosen modules, the index files depmod needs, an empty writable extra/
    for test modules, then depmod so modprobe resolves dependencies."""
    for rel in plan.modules:
        _copy(plan.modules_dir / rel, dest / rel)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (plan.modules_dir / name).exists():
            _copy(plan.modules_dir / name, dest / name)
    (dest / "extra").mkdir(parents=True, exist_ok=True)
    root = dest.parents[3]  # <root>/usr/lib/modules/<release>
    _run(["depmod", "-b", str(root), plan.release])


def images_dir() -> Path:
    path = cache_root() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_path(profile: KernelProfile, plan: ImagePlan) -> Path:
    return images_dir() / f"{file_safe(profile.name)}-{plan.input_hash()}.cpio.gz"


def ensure_image(profile: KernelProfile, force: bool = False) -> Path:
    """The profile's initramfs, built now if no intact image with the same inputs
    exists."""
    plan = plan_image(profile)
    dest = image_path(profile, plan)
    built = cached_file(dest, lambda root, out: _build(plan, root, out), force, gzip_intact)
    _remove_older_images(built)
    return built


def _build(plan: ImagePlan, scratch: Path, out: Path) -> None:
    root = scratch / "root"
    root.mkdir()
    stage(plan, root)
    write_initramfs(root, out)


def gzip_intact(path: Path) -> bool:
    """Whether a gzip file decompresses to its end with a matching CRC and length
    (how an image from before checksums were recorded is taken on)."""
    try:
        with gzip.open(path, "rb") as src:
            while src.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error):
        return False
    return True


def _remove_older_images(current: Path) -> None:
    """Drop images of the same profile built from older inputs."""
    prefix = current.name.rsplit("-", 1)[0] + "-"
    for old in current.parent.glob(f"{prefix}*.cpio.gz"):
        if old != current and re.fullmatch(r"[0-9a-f]{16}\.cpio\.gz", old.name[len(prefix) :]):
            old.unlink(missing_ok=True)
            sum_path(old).unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    force = "--force" in argv
    for name in [a for a in argv if a != "--force"] or [DEFAULT_PROFILE]:
        print(ensure_image(load_profile(name), force=force))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
