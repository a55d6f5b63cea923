"""Run one scenario in a prepared guest and compare each step with the model.

`ScenarioSession.run` is the heart of the harness: copy the scenario's modules in,
then per step: perform it, wait as the prediction says, observe, compare; stop at the
first difference.  Preparing and cleaning the guest between scenarios lives in
`harness.runner.reset`.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.record import StepRecord
from harness.report.compare import Mismatch, diff_records
from harness.runner import observe, waits
from harness.runner.actions import perform
from harness.runner.shell import CommandResult
from harness.scenario.steps import format_step
from harness.scenario.types import Scenario, Step, Unload

# Where the scenario's modules go; `$__release` is set by INSTALL with a builtin read
# (`$(uname -r)` would start a program: tens of ms under TCG).
EXTRA_DIR = "/lib/modules/$__release/extra"


class GuestLike(Protocol):
    """What the runner uses of harness.guest.vm.Guest."""

    console_log: Path

    def run(self, cmd: str, timeout: float = 30.0, check: bool = False) -> CommandResult: ...

    def put_file(self, local: Path, remote: str) -> None: ...

    def feed(
        self, local: Path, cmd: str, timeout: float = 120.0, check: bool = False
    ) -> CommandResult: ...

    def check_alive(self) -> None: ...


@dataclass
class ScenarioOutcome:
    scenario: str
    profile: str
    predicted: list[StepRecord]
    observed: list[StepRecord] = field(default_factory=list)
    mismatch: Mismatch | None = None
    error: str | None = None  # a crash or harness failure, one line + excerpt
    diagnostics: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kernel_log: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.mismatch is None
            and (len(self.observed) == len(self.predicted))
        )


# Unpack the archive on stdin into an emptied extra/ (a resumed guest's is empty: no
# program starts), index it, and clear the kernel log.  Static busybox where kmod's
# own tools are not needed: it starts several times faster than dynamic programs.
INSTALL = (
    "read -r __release < /proc/sys/kernel/osrelease; "
    f'for f in {EXTRA_DIR}/*; do [ -e "$f" ] && rm -rf {EXTRA_DIR} && break; done; '
    f"{{ [ -d {EXTRA_DIR} ] || mkdir -p {EXTRA_DIR}; }} && "
    f"busybox tar -x -C {EXTRA_DIR} && depmod -a && {observe.KMSG_DUMP}"
)


def install_modules(guest: GuestLike, modules: dict[str, Path]) -> int:
    """Replace the guest's extra/ modules with this scenario's and run depmod, so
    `modprobe <name>` finds exactly the scenario's build of each module; returns the
    sequence number of the last kernel log record (the scenario's log starts after).

    The modules travel as one tar archive (a copy costs a round trip, a module set is
    several), without their debug information: it is most of a module's size, the
    kernel ignores it, and the host keeps the unstripped build."""
    with tempfile.TemporaryDirectory(prefix="klp-modules-") as tmp:
        archive = Path(tmp) / "modules.tar"
        with tarfile.open(archive, "w") as tar:
            for name, ko in sorted(modules.items()):
                tar.add(_without_debug_info(ko, Path(tmp)), arcname=f"{name}.ko")
        out = guest.feed(archive, INSTALL, check=True, timeout=60)
    records = observe.parse_kmsg(out.stdout)  # cleared: the scenario's log starts empty
    return records[-1].seq if records else -1


def _without_debug_info(ko: Path, directory: Path) -> Path:
    """A copy of `ko` with its .debug_* sections removed (the original if `strip`
    fails: a larger copy costs time, not correctness)."""
    stripped = directory / f"{ko.stem}.stripped.ko"
    proc = subprocess.run(
        ["strip", "--strip-debug", "-o", str(stripped), str(ko)],
        capture_output=True,
        check=False,
    )
    return stripped if proc.returncode == 0 else ko


Progress = Callable[[int, str], None]


class ScenarioSession:
    """Runs the steps of one scenario on a guest that `reset` has cleaned."""

    def __init__(
        self, guest: GuestLike, scenario: Scenario, profile: str, kmsg_seq: int | None = None
    ) -> None:
        self.guest = guest
        self.scenario = scenario
        self.profile = profile
        self.log = observe.KernelLog(guest)
        self.kmsg_seq = kmsg_seq  # the log before the scenario ends here (None: read it)
        self.module_names = [m.name for m in scenario.modules]
        self.funcs = scenario.patched_funcs()
        self.outcome: ScenarioOutcome | None = None  # set by run()

    def run(
        self, predicted: Sequence[StepRecord], progress: Progress | None = None
    ) -> ScenarioOutcome:
        outcome = ScenarioOutcome(self.scenario.name, self.profile, list(predicted))
        self.outcome = outcome  # kept if a step raises: the steps observed before it
        started = time.monotonic()
        try:
            if self.kmsg_seq is None:
                self.log.skip_to_end()
            else:
                self.log.last_seq = self.kmsg_seq
            steps = zip(self.scenario.steps, predicted, strict=True)
            for index, (step, want) in enumerate(steps):
                if progress:
                    progress(index, format_step(step))
                got = self.run_step(index, step, want)
                outcome.observed.append(got)
                self.guest.check_alive()
                diffs = diff_records(want, got)
                if diffs:
                    outcome.mismatch = Mismatch(index, got.step, tuple(diffs))
                    if got.pending and not want.pending:
                        outcome.diagnostics = waits.unpatched_tasks(self.guest)
                    break
        finally:
            outcome.kernel_log = [r.text for r in self.log.all_records]
            outcome.seconds = time.monotonic() - started
        return outcome

    def run_step(self, index: int, step: Step, want: StepRecord) -> StepRecord:
        if isinstance(step, Unload) and want.errno == 0:
            waits.wait_refcnt_zero(self.guest, step.module)
        first_seq = self.log.last_seq
        errno_value = perform(self.guest, self.scenario, step)
        return self.observe(index, step, errno_value, first_seq, want)

    def observe(
        self, index: int, step: Step, errno_value: int, first_seq: int, want: StepRecord
    ) -> StepRecord:
        """Wait as the model predicts, then take one snapshot (one round trip).

        Any step can start or end a transition (a load, a write, a release of a parked
        task), so every step waits for the state the model predicts; when it is already
        there the wait costs nothing.  A wait that runs out is not an error here: the
        snapshot then shows the difference."""
        script = (
            waits.settle_script(want)
            + "; "
            + observe.snapshot_script(self.module_names, self.funcs)
        )
        out = observe.split_sections(
            self.guest.run(script, timeout=waits.SETTLE_TIMEOUT + 30).stdout
        )
        texts = [r.text for r in self.log.feed(out["kmsg"]) if r.seq > first_seq]
        sysfs = observe.parse_sysfs(out["sysfs"])
        pending = next(
            (p.split("/")[0] for p, v in sysfs.items() if p.endswith("/transition") and v == "1"),
            None,
        )
        return StepRecord(
            index=index,
            step=format_step(step),
            errno=errno_value,
            log=observe.normalize_pointers(observe.filter_log(texts, self.module_names)),
            sysfs=sysfs,
            modules=observe.parse_modules(out["modules"]),
            impls=observe.parse_impls(out["impls"]),
            pending=pending,
        )
