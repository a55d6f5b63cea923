"""What one step did: the common shape of a prediction (model) and an observation (guest).

The model fills a `StepRecord` from its state without ever seeing the guest; the runner
fills one from the guest.  The report compares them field by field, so both sides must
use exactly these conventions:

* `errno`: 0 for success, else the positive errno of the failing operation (modprobe's
  init_module/finit_module, rmmod's delete_module, or the sysfs/sysctl write).
* `log`: the new kernel log lines since the step began, filtered as upstream's
  `check_result` does: keep lines containing `livepatch:` or naming a scenario module
  (as a word), and x86's module relocation errors (`module: x86/modules: ...`); drop
  `tainting kernel`/`taints kernel` lines; timestamps stripped, kernel pointers
  (`%px`, any 16-digit hex word) rewritten to `PTRn` in first-seen order per step
  (PTR0 = NULL).  Lines the runner itself writes to /dev/kmsg are part of it (see
  docs/runner-protocol.md).
* `sysfs`: every file under /sys/kernel/livepatch that can be read, path relative to it
  (`p/enabled`, `p/transition`, `p/vmlinux/patched`, ...), value stripped; write-only
  `force` is recorded as "<write-only>" so its presence is compared.
* `modules`: every scenario module currently loaded -> its refcnt as a string.
* `impls`: every function any scenario patch names, `object:func` -> the implementation
  a call runs now: "orig" or the patch's name.  Functions of unloaded target modules
  are omitted.
* `pending`: the patch whose transition has not settled after the step, or None.
* `actors`: every actor of the scenario's loaded targets -> what it shows: a
  spinner thread (`<target>:spinner`) is `stopped`, or `patch_state=N ran=IMPL`:
  its /proc/<pid>/patch_state and the implementation of its function it last
  returned from (`none` while it spins inside it).
* `report`: a kernel report the step caused and the kernel survived (a WARN), as
  `warning at FILE:LINE FUNCTION` (no CPU, PID or offset): the model predicts one
  only for a known kernel bug (harness/model/kernel/bpf.py), and then the scenario ends
  there, the kernel being hurt; its record holds nothing else.  Observed in the
  step's kernel log, or by the console's crash watcher.  "" otherwise (an unpredicted
  report is a mismatch, or the crash it is if the console shows it first).
* `due` (predicted, not compared): for a transition pending during the step, when
  its retries log `signaling remaining tasks` (harness/model/retries.py); the
  session puts the line into the prediction once the observed `retries` got there.
* `retries` (observed, not compared): how many times the kernel retried a stalled
  transition during the step (None: the kernel has no tracing to count them).
* `stacks` (predicted, not compared): the func stack of every function a patch
  occupies after the step, `object:func` -> the patches on it, bottom first, a nop
  entry as `patch:nop` (harness/model/kernel/patch.py); what the report draws.
* `started`, `ended` (observed, not compared): the host's wall-clock time (seconds
  since the epoch) when the step's command was sent and when its observation was
  read; `guest_started`, `guest_ended`: the guest's clock (seconds since boot, as
  the kernel log's timestamps count) at the same moments, when the step read it.
* `ran` (trigger steps only): per watched function `object:func`, which
  implementations ran while the command did: patch names and/or "orig", sorted,
  joined by "+" ("none" if nothing ran), followed by `*N` when the step gives the
  exact number of calls (the sum over implementations).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class StepRecord:
    index: int  # 0-based step index in the scenario
    step: str  # the step as written in the scenario, e.g. "load test_klp_livepatch"
    errno: int = 0
    log: list[str] = field(default_factory=list)
    sysfs: dict[str, str] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)
    impls: dict[str, str] = field(default_factory=dict)
    pending: str | None = None
    ran: dict[str, str] = field(default_factory=dict)
    actors: dict[str, str] = field(default_factory=dict)
    due: dict[str, int] = field(default_factory=dict)
    retries: int | None = None
    report: str = ""
    stacks: dict[str, list[str]] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    guest_started: float | None = None
    guest_ended: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


COMPARED_FIELDS = (
    "errno", "log", "sysfs", "modules", "impls", "pending", "ran", "actors", "report"
)  # fmt: skip
