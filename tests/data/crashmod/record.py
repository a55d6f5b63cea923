"""Record the console logs of tests/data/ from real guests (run by hand, not by pytest).

    .venv/bin/python -m tests.data.crashmod.record debian-6.1 ud2 double-free ...

For each case, boots a fresh guest of the profile (with the extra kernel parameters the
case needs), loads `crashmod.ko what=<case>` over SSH, waits for the report to reach the
console, and saves the console log as tests/data/console-<profile>-<case>.log.  The
tests keep only what the crash watcher needs, so a log is recorded once and kept: the
kernels' report formats are what they are testing, not this script.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.guest.errors import GuestError
from harness.guest.vm import Guest, GuestConfig
from harness.kernel.profiles import load_profile
from harness.modules.build import build_sources

HERE = Path(__file__).parent
DATA = HERE.parent
# case -> extra kernel parameters (slub_debug as the harness's guests run it).
APPEND: dict[str, tuple[str, ...]] = {
    "soft-lockup": ("watchdog_thresh=1",),
    "oops-panic": ("oops=panic",),
}
SLUB_DEBUG = "slub_debug=FZPU"
MODULE_CASE = {"oops-panic": "null"}  # case -> crashmod's `what`
SETTLE = 8.0  # seconds for the rest of a report (a soft lockup needs a few)


def record(profile_name: str, case: str) -> Path:
    profile = load_profile(profile_name)
    source = (HERE / "crashmod.c").read_text()
    ko = build_sources({"crashmod": source}, profile).modules["crashmod"]
    with tempfile.TemporaryDirectory() as tmp:
        config = GuestConfig.for_profile(
            profile, log_dir=Path(tmp), append=(SLUB_DEBUG, *APPEND.get(case, ()))
        )
        with Guest(config) as guest:
            guest.put_file(ko, "/tmp/crashmod.ko")
            what = MODULE_CASE.get(case, case)
            with contextlib.suppress(GuestError):
                guest.run(f"insmod /tmp/crashmod.ko what={what}", timeout=60)
            time.sleep(SETTLE)
            log = guest.console_log
        dest = DATA / f"console-{profile_name}-{case}.log"
        shutil.copyfile(log, dest)
    return dest


def main(argv: list[str]) -> int:
    profile, *cases = argv
    for case in cases:
        print(record(profile, case), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
