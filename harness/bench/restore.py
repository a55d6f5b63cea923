"""Benchmark: resuming the saved ready guest, per kernel profile.

`restore_to_ready_s` is QEMU start until the resumed guest's command channel
answers (what every scenario would wait for without prefetching); the snapshot is
made first if the cache has none (not timed).
"""

from __future__ import annotations

import statistics
import time

from harness.guest.snapshot import SnapshotStore
from harness.guest.vm import Guest
from harness.kernel.profiles import DEFAULT_PROFILE, load_profile
from harness.runner import reset
from harness.runner.guests import GuestSource

SAMPLES = 7


def bench_restore() -> None:

    profile = load_profile(DEFAULT_PROFILE)
    source = GuestSource(profile)
    try:
        source.take({}).guest.close()  # makes the snapshot if there is none
        snapshot = SnapshotStore(source.config(), reset.PREPARE).load()
        if snapshot is None:
            print("   no snapshot could be made")
            return
        samples = []
        for _ in range(SAMPLES):
            started = time.monotonic()
            with Guest(source.config(), restore=snapshot.saved) as guest:
                guest.run("true")
                samples.append(time.monotonic() - started)
    finally:
        source.close()
    size = snapshot.saved.state.stat().st_size / 1e6
    print(f"   {profile.name}: snapshot {size:.0f} MB; {SAMPLES} resumes, "
          f"min {min(samples):.3f}s, max {max(samples):.3f}s")  # fmt: skip
    print(f"restore_to_ready_s: {statistics.median(samples):.3f}", flush=True)
