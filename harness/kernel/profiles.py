"""Kernel profiles: which kernel a guest boots and which headers modules build against.

A profile is either a named Debian kernel (`debian-6.1`, `debian-6.12`, `debian-7.3`),
fetched as `.deb` files and unpacked with `dpkg-deb -x` into a cache outside the
checkout by `harness.kernel.debian` (never installed into the host's /boot), or a user's own
built tree (`--kernel-dir DIR`).
Fetching is idempotent: an unpacked profile records itself in `profile.json` and is
reused by every clone on the machine.

`profile.json` has its checksum, and the kernel image's size and sha256, recorded
beside it in `checksums.json` and checked on every load (profile.json itself keeps
its plain layout, so older checkouts sharing the cache still read it).  A damaged
record (truncated, edited) is rewritten from the unpacked tree, which holds everything
it says; a damaged kernel image cannot be repaired locally, so it is reported with
the command that fetches it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.files import atomic_write, sha256_file
from harness.kernel import kconfig


@dataclass(frozen=True)
class KernelProfile:
    """Everything the rest of the harness needs to know about one kernel."""

    name: str  # "debian-6.1", "debian-6.12" or "dir:<path>"
    release: str  # `uname -r` of the guest, e.g. "6.1.0-56-amd64"
    version: str  # upstream version, e.g. "6.1.192"
    vermagic: str  # what modinfo reports for modules built against it
    bzimage: Path
    build_dir: Path  # `make -C <build_dir> M=...` builds out-of-tree modules
    modules_dir: Path  # holds kernel/, modules.order, ...: /lib/modules/<release> in the guest
    config: Path
    livepatch: bool  # CONFIG_LIVEPATCH=y

    @property
    def series(self) -> str:
        """Major.minor, e.g. "6.1": selects the reference model's kernel profile."""
        return ".".join(self.version.split(".")[:2])


# Named Debian profiles; where each one's packages come from: harness.kernel.debian.SERIES.
DEBIAN_SERIES: tuple[str, ...] = ("debian-6.1", "debian-6.12", "debian-7.3")
DEFAULT_PROFILE = "debian-6.1"


def cache_root() -> Path:
    """Cache shared by every checkout: $KLP_HARNESS_CACHE or ~/.cache/klp-harness."""
    env = os.environ.get("KLP_HARNESS_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "klp-harness"
    root.mkdir(parents=True, exist_ok=True)
    return root


def profile_names() -> list[str]:
    return list(DEBIAN_SERIES)


def load_profile(name: str) -> KernelProfile:
    """Return an already fetched named profile; fails with a hint to run setup."""
    if name not in DEBIAN_SERIES:
        raise UsageError(
            f"unknown kernel profile {name!r} (known: {', '.join(DEBIAN_SERIES)}; "
            "or use --kernel-dir DIR)"
        )
    dest = cache_root() / "kernels" / name
    record = dest / PROFILE_RECORD
    if not record.is_file() and not dest.is_dir():
        raise HarnessError(f"kernel profile {name} is not fetched yet: run `make setup`")
    profile = read_record(record)
    if profile is None:  # damaged or from an older harness: rewrite it from the tree
        profile = describe_unpacked(name, dest)
        write_record(profile, record)
    check_kernel_image(profile, record)
    return profile


def resolve_profile(name: str | None, kernel_dir: str | None = None) -> KernelProfile:
    """The profile a command asked for: --kernel-dir wins, then --kernel, then default."""
    if kernel_dir:
        return profile_from_tree(Path(kernel_dir))
    return load_profile(name or DEFAULT_PROFILE)


# ---- profile.json ------------------------------------------------------------------------

PROFILE_RECORD = "profile.json"
CHECKSUMS = "checksums.json"  # {"profile.json": sha256, "bzimage": {"size", "sha256"}}
_images_checked: dict[Path, tuple[int, int, int]] = {}


def _checksums(record: Path) -> dict[str, object]:
    data = json.loads((record.parent / CHECKSUMS).read_text())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


PATH_FIELDS = ("bzimage", "build_dir", "modules_dir", "config")


def read_record(path: Path) -> KernelProfile | None:
    """The profile a profile.json describes, or None if it is missing, damaged (its
    recorded checksum does not match) or has no checksum recorded.  Its paths are
    relative to the cache root (`write_record`), so a cache copied or moved elsewhere
    builds against its own kernel trees; an older record of absolute paths outside
    the cache root (a cache since copied or moved) is None too, and so rewritten."""
    try:
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != _checksums(path)[PROFILE_RECORD]:
            return None
        data = json.loads(raw)
        if set(data) != {f.name for f in fields(KernelProfile)}:
            return None
        for key in PATH_FIELDS:
            if Path(data[key]).is_absolute() and not Path(data[key]).is_relative_to(cache_root()):
                return None  # an older record, of a cache since copied or moved
            data[key] = cache_root() / data[key]  # an absolute one stays as it is
        return KernelProfile(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(profile: KernelProfile, path: Path) -> None:
    """Write profile.json, then its checksums (with the kernel image's), each
    atomically: a death in between leaves a record that is rewritten next time.  Paths
    inside the cache root are written relative to it."""
    root = cache_root().resolve()

    def portable(value: Path) -> str:
        absolute = value if value.is_absolute() else value.resolve()
        for base in (cache_root(), root):
            if absolute.is_relative_to(base):
                return str(absolute.relative_to(base))
        return str(value)

    data = {k: portable(v) if isinstance(v, Path) else v for k, v in asdict(profile).items()}
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, text)
    sums = {
        PROFILE_RECORD: hashlib.sha256(text.encode()).hexdigest(),
        "bzimage": {
            "size": profile.bzimage.stat().st_size,
            "sha256": sha256_file(profile.bzimage),
        },
    }
    atomic_write(path.parent / CHECKSUMS, json.dumps(sums, indent=2, sort_keys=True) + "\n")


def check_kernel_image(profile: KernelProfile, record: Path) -> None:
    """Refuse a kernel image that is not the one recorded (a truncated bzImage would
    otherwise cost a boot timeout).  Hashed once per process while unchanged."""
    problem = _image_problem(profile, record)
    if problem:
        raise HarnessError(
            f"kernel profile {profile.name}: {profile.bzimage} {problem}: "
            f"run `klp-harness setup {profile.name}` to fetch it again"
        )


def _image_problem(profile: KernelProfile, record: Path) -> str:
    try:
        info = profile.bzimage.stat()
    except OSError as exc:
        return f"is unreadable ({exc.strerror})"
    stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
    if _images_checked.get(profile.bzimage) == stamp:
        return ""
    try:
        recorded = _checksums(record)["bzimage"]
        assert isinstance(recorded, dict)
        size, digest = recorded["size"], recorded["sha256"]
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return "has no recorded checksum"
    if info.st_size != size:
        return f"is {info.st_size} bytes, {size} were recorded (truncated?)"
    if sha256_file(profile.bzimage) != digest:
        return "does not match its recorded checksum (damaged)"
    _images_checked[profile.bzimage] = stamp
    return ""


def describe_unpacked(name: str, dest: Path) -> KernelProfile:
    """The profile of an unpacked Debian kernel under `dest` (what fetching found),
    read back from the tree itself.  Up to 6.12 the image is boot/vmlinuz-<release>
    and the modules are in lib/modules; 7.x ships both under usr/lib/modules/<release>
    (vmlinuz.unsigned from linux-binary-unsigned)."""
    images = [
        *sorted((dest / "boot").glob("vmlinuz-*")),
        *sorted((dest / "usr/lib/modules").glob("*/vmlinuz*")),
    ]
    if len(images) != 1:
        raise HarnessError(
            f"kernel profile {name}: profile.json is damaged and {dest} does not "
            "hold exactly one kernel image: run `make setup`"
        )
    image = images[0]
    in_boot = image.parent.name == "boot"
    release = image.name.removeprefix("vmlinuz-") if in_boot else image.parent.name
    build_dir = dest / "usr/src" / f"linux-headers-{release}"
    config_file = build_dir / ".config"
    try:
        config = read_config(config_file)
    except OSError as exc:
        raise HarnessError(
            f"kernel profile {name}: cannot read {config_file} ({exc.strerror}): run `make setup`"
        ) from None
    return KernelProfile(
        name=name,
        release=release,
        version=_debian_upstream_version(dest, release),
        vermagic=vermagic_for(release, config),
        bzimage=image,
        build_dir=build_dir,
        modules_dir=dest / ("lib/modules" if in_boot else "usr/lib/modules") / release,
        config=config_file,
        livepatch=config.get("CONFIG_LIVEPATCH") == "y",
    )


# ---- config and vermagic --------------------------------------------------------------


def read_config(config: Path) -> dict[str, str]:
    """Parse a kernel .config into {CONFIG_X: value}."""
    options: dict[str, str] = {}
    for line in config.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            options[key] = value
    return options


def vermagic_for(release: str, config: dict[str, str]) -> str:
    """The vermagic string modules get (include/linux/vermagic.h), e.g.
    "6.1.0-56-amd64 SMP preempt mod_unload modversions"."""
    parts = [release]
    if config.get("CONFIG_SMP") == "y":
        parts.append("SMP")
    if config.get("CONFIG_PREEMPT_RT") == "y":
        parts.append("preempt_rt")
    elif config.get("CONFIG_PREEMPT") == "y" or config.get("CONFIG_PREEMPT_DYNAMIC") == "y":
        parts.append("preempt")
    if config.get("CONFIG_MODULE_UNLOAD") == "y":
        parts.append("mod_unload")
    if config.get("CONFIG_MODVERSIONS") == "y":
        parts.append("modversions")
    return " ".join(parts)


# ---- user trees -----------------------------------------------------------------------


def profile_from_tree(tree: Path) -> KernelProfile:
    """A profile for a user's own built kernel tree (bzImage + build dir + modules).

    Expects `make` and `make modules_install INSTALL_MOD_PATH=<tree>/mod-install` (or a
    `modules_dir` of the same layout) to have been run; the release comes from
    include/config/kernel.release.  The tree is refused, before anything is built or
    booted, when a file is missing, its .config lacks an option the harness needs
    (harness.kernel.kconfig) or the guest drivers it builds as modules are not installed;
    every refusal names the recipe (docs/own-kernel.md)."""
    where = f"--kernel-dir {tree}"
    tree = tree.resolve()
    if not tree.is_dir():
        raise UsageError(f"{where}: not a directory{_recipe_hint()}")
    release_file = tree / "include/config/kernel.release"
    bzimage = tree / "arch/x86/boot/bzImage"
    config_file = tree / ".config"
    if not config_file.is_file():  # not configured yet: building comes after
        raise UsageError(
            f"{where}: missing .config (configure it first: `make defconfig`, merge "
            f"{kconfig.FRAGMENT.name} into it, then `make bzImage modules`){_recipe_hint()}"
        )
    for needed in (release_file, bzimage):
        if not needed.is_file():
            raise UsageError(
                f"{where}: missing {needed.relative_to(tree)} (build it: "
                f"`make bzImage modules`){_recipe_hint()}"
            )
    release = release_file.read_text().strip()
    modules_dir = tree / "mod-install/lib/modules" / release
    config = read_config(config_file)
    report = kconfig.check(config)
    if not report.ok:
        raise UsageError(report.error_line(where))
    _check_modules_installed(where, config, modules_dir)
    version_match = re.match(r"\d+\.\d+(\.\d+)?", release)
    return KernelProfile(
        name=f"dir:{tree}",
        release=release,
        version=version_match.group(0) if version_match else release,
        vermagic=vermagic_for(release, config),
        bzimage=bzimage,
        build_dir=tree,
        modules_dir=modules_dir,
        config=config_file,
        livepatch=config.get("CONFIG_LIVEPATCH") == "y",
    )


def tree_identity(profile: KernelProfile) -> str:
    """What changes when a user's tree is rebuilt: its kernel image's size and mtime
    ("" for Debian's profiles, whose files never change under a name).  Part of the
    build caches' keys, so modules built against a tree's old headers are not reused
    after `make` rebuilt it with the same release (a maintainer's edit-build-test loop)."""
    if not profile.name.startswith("dir:"):
        return ""
    try:
        info = profile.bzimage.stat()
    except OSError:
        return "missing"
    return f"{info.st_size}-{info.st_mtime_ns}"


def _recipe_hint() -> str:
    return f" (recipe: {kconfig.RECIPE})"


def _check_modules_installed(where: str, config: dict[str, str], modules_dir: Path) -> None:
    """The guest drivers the config builds as modules must be installed for this
    release: the guest image takes them from `modules_dir` (a missing one would
    otherwise surface as "module virtio_pci not found" while building the image)."""
    modular = kconfig.modular_guest_drivers(config)
    if not modular:
        return
    install = "run `make modules_install INSTALL_MOD_PATH=mod-install` in the tree"
    order = modules_dir / "modules.order"
    try:
        listed = {Path(line.strip()).stem for line in order.read_text().splitlines()}
    except OSError:
        raise UsageError(
            f"{where}: modules not installed: no {order} (the guest loads "
            f"{', '.join(modular)} from there): {install}{_recipe_hint()}"
        ) from None
    missing = [m for m in modular if m not in {n.replace("-", "_") for n in listed}]
    if missing:
        raise UsageError(
            f"{where}: modules not installed for this build: {order} lists no "
            f"{', '.join(missing)}: {install}{_recipe_hint()}"
        )


# ---- Debian's trees (fetched by harness.kernel.debian) ---------------------------------------


def _debian_upstream_version(root: Path, release: str) -> str:
    """Upstream version (e.g. 6.1.192) from the image's (7.x: linux-base's) changelog."""
    docs = root / "usr/share/doc"
    for doc in [
        *docs.glob(f"linux-image-{release}*/changelog.Debian.gz"),
        *docs.glob(f"linux-base-{release}/changelog.Debian.gz"),  # 7.x
    ]:
        out = subprocess.run(["zcat", str(doc)], capture_output=True, text=True, check=False)
        match = re.search(r"\(([\d.]+)", out.stdout)
        if match:
            return match.group(1)
    series = re.match(r"\d+\.\d+(\.\d+)?", release)
    return series.group(0) if series else release
