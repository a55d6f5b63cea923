"""The kernel options the harness needs, checked on the `.config` before any build or boot.

Why a check of its own: a kernel that lacks one of these options does not fail where
the option is missing but much later and somewhere else.  Without DYNAMIC_DEBUG every
scenario "differs from the model" in its log; without DEBUG_FS the first `call` step
times out; without VIRTIO_CONSOLE the guest boots and never answers; without
LIVEPATCH's dependencies `make olddefconfig` silently drops LIVEPATCH itself.  Read
from the `.config` (a few milliseconds), every missing option is named at once with
what it breaks: the required ones as one error, the optional ones as warnings naming
the feature that is lost.

A user's tree (`--kernel-dir`) is checked when it is resolved; Debian's profiles at
`klp-harness setup`, so a future change of Debian's config is caught there.
`docs/klp-harness.config` is the same list as a fragment for
scripts/kconfig/merge_config.sh, and `docs/own-kernel.md` the recipe that uses it (a
unit test keeps the fragment and this list in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "own-kernel.md"
FRAGMENT = RECIPE.with_name("klp-harness.config")
UNSET = "n"  # what read_config() leaves for `# CONFIG_X is not set` or an absent line


@dataclass(frozen=True)
class Option:
    """One requirement: any of `names` (without CONFIG_) set to one of `values`.

    `feature` is empty for a required option; for an optional one it names what a
    kernel without it loses (the rest of the harness works)."""

    names: tuple[str, ...]
    breaks: str  # what a kernel without it breaks, shown to the user
    values: tuple[str, ...] = ("y",)
    feature: str = ""

    @property
    def required(self) -> bool:
        return not self.feature

    def satisfied(self, config: dict[str, str]) -> bool:
        return any(config.get(f"CONFIG_{name}", UNSET) in self.values for name in self.names)

    def problem(self, config: dict[str, str]) -> str:
        """E.g. "CONFIG_DEBUG_FS is not set" or "CONFIG_MODULE_SIG_FORCE=y, must not be set"."""
        if self.values == (UNSET,):
            name = self.names[0]
            return f"CONFIG_{name}={config.get(f'CONFIG_{name}')}, must not be set"
        wanted = " or ".join(self.values)
        parts = []
        for name in self.names:
            value = config.get(f"CONFIG_{name}", UNSET)
            parts.append(
                f"CONFIG_{name} is not set"
                if value == UNSET
                else f"CONFIG_{name}={value}, needs {wanted}"
            )
        return " and ".join(parts)


def _y(name: str, breaks: str) -> Option:
    return Option((name,), breaks)


def _ym(name: str, breaks: str) -> Option:
    return Option((name,), breaks, ("y", "m"))


REQUIRED: tuple[Option, ...] = (
    _y("LIVEPATCH", "livepatch itself: no patch module can register"),
    # LIVEPATCH's own dependencies (kernel/livepatch/Kconfig), named so that a config
    # whose LIVEPATCH=y was dropped by olddefconfig says why.
    _y("HAVE_LIVEPATCH", "LIVEPATCH depends on it: the architecture's livepatch support"),
    Option(
        ("DYNAMIC_FTRACE_WITH_REGS", "DYNAMIC_FTRACE_WITH_ARGS"),
        "LIVEPATCH depends on one of them: patched functions are redirected by ftrace",
    ),
    _y("KALLSYMS_ALL", "LIVEPATCH depends on it: patches find functions and symbols by kallsyms"),
    _y("MODULES", "scenarios and selftests are loadable modules"),
    _y("MODULE_UNLOAD", "unload steps and the cleanup between scenarios use rmmod"),
    Option(
        ("TRIM_UNUSED_KSYMS",),
        "LIVEPATCH depends on it being off: trimmed exports break out-of-tree modules",
        (UNSET,),
    ),
    Option(
        ("MODULE_SIG_FORCE",),
        "the generated modules are unsigned: the kernel would refuse every one",
        (UNSET,),
    ),
    _y(
        "HAVE_RELIABLE_STACKTRACE",
        "the consistency model checks each task's stack with a reliable unwinder, on x86 "
        "UNWINDER_ORC or frame pointers; without it transitions wait for tasks to leave "
        "the kernel and differ from the model",
    ),
    _y(
        "DYNAMIC_DEBUG",
        "the runner turns on livepatch's pr_debug lines; every step's kernel log is "
        "compared with them, and upstream's selftests check them too",
    ),
    _y(
        "DEBUG_FS",
        "the targets' call files under /sys/kernel/debug/klp_harness, which say which "
        "implementation runs, and dynamic debug's control file",
    ),
    _y("X86_64", "the guest is qemu-system-x86_64 running the host's x86_64 programs"),
    _y("BLK_DEV_INITRD", "the guest's root file system is an initramfs"),
    _y("RD_GZIP", "the guest's initramfs is gzip-compressed"),
    _y("DEVTMPFS", "the guest's init mounts devtmpfs on /dev"),
    _y(
        "SERIAL_8250_CONSOLE",
        "the console on ttyS0: boot detection, the crash watcher and the serial shell",
    ),
    _ym("VIRTIO_PCI", "the PCI transport of the command channel and the network"),
    _ym(
        "VIRTIO_CONSOLE",
        "the command channel, virtio-serial ports klp.cmd and klp.err, that every step "
        "runs on: the guest would boot and never answer",
    ),
    _ym(
        "VIRTIO_NET",
        "the guest's network, QEMU's virtio-net-pci, which E1000 does not replace: the "
        "image loads virtio_net, and `repro` and `boot --keep` shells use SSH",
    ),
)

OPTIONAL: tuple[Option, ...] = (
    Option(
        ("SLUB_DEBUG",),
        "slub_debug=FZPU does nothing: a corrupted kernel heap is not caught by the "
        "scenario that corrupted it",
        feature="SLUB memory checks",
    ),
    Option(
        ("KFENCE",),
        "kfence.sample_interval is ignored: no sampled use-after-free detection",
        feature="KFENCE memory checks",
    ),
    Option(
        ("KPROBES",),
        "upstream's test-kprobe.sh, in kernels that ship it, cannot register its kprobe",
        feature="the kprobe selftest",
    ),
    Option(
        ("MAGIC_SYSRQ",),
        "no /proc/sysrq-trigger for task and lock dumps in `repro` and `boot --keep` shells",
        feature="SysRq in guest shells",
    ),
)

# Guest drivers that may be modules: the guest image loads them from the tree's
# installed modules (harness.guest.image.NET_MODULES), so a tree with one =m must
# have run modules_install.
GUEST_MODULES = {"VIRTIO_PCI": "virtio_pci", "VIRTIO_NET": "virtio_net",
                 "VIRTIO_CONSOLE": "virtio_console"}  # fmt: skip


@dataclass
class ConfigReport:
    """The outcome of a check: what is missing, required and optional."""

    errors: list[str] = field(default_factory=list)  # "CONFIG_X is not set (breaks ...)"
    warnings: list[str] = field(default_factory=list)  # "feature: CONFIG_X is not set (...)"

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_line(self, what: str, recipe: bool = True) -> str:
        """The one-line error for `what` (e.g. "--kernel-dir /x"), naming the recipe
        (a user's tree) or not (Debian's profiles, whose config is not ours to fix)."""
        line = f"{what}: its .config lacks what the harness needs: {'; '.join(self.errors)}"
        if recipe:
            line += f". Recipe: {RECIPE} (merge {FRAGMENT.name} into the config)"
        return line


def check(config: dict[str, str]) -> ConfigReport:
    """Check a parsed .config ({CONFIG_X: value}, as harness.kernel.profiles.read_config)."""
    report = ConfigReport()
    for option in REQUIRED:
        if not option.satisfied(config):
            report.errors.append(f"{option.problem(config)} ({option.breaks})")
    for option in OPTIONAL:
        if not option.satisfied(config):
            report.warnings.append(f"{option.feature}: {option.problem(config)} ({option.breaks})")
    return report


def modular_guest_drivers(config: dict[str, str]) -> list[str]:
    """Names of the guest drivers the config builds as modules (they must be installed)."""
    return [module for name, module in GUEST_MODULES.items() if config.get(f"CONFIG_{name}") == "m"]


def fragment_options(text: str) -> dict[str, str]:
    """The `CONFIG_X=v` lines of a config fragment (comments and blanks left out)."""
    options = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            options[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:].split()[0]] = UNSET
    return options
