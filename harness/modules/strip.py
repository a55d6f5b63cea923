"""A module's copy for the guest: its debug information left on the host.

Debug information is most of a module's size and the kernel ignores it; a guest's
copy travels without it, the host keeps the unstripped build for reading."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.modules import klprela


def without_debug_info(ko: Path, directory: Path) -> Path:
    """A copy of `ko` with its .debug_* sections removed (the original if `strip`
    fails: a larger copy costs time, not correctness).  A module with livepatch
    relocations travels whole: `strip` (binutils 2.40) rewrites their sections as
    ordinary ones and points their relocations at symbol 0 (harness/modules/klprela.py
    says what they are)."""
    if klprela.SECTION_PREFIX.encode() in ko.read_bytes():
        return ko
    stripped = directory / f"{ko.stem}.stripped.ko"
    proc = subprocess.run(
        ["strip", "--strip-debug", "-o", str(stripped), str(ko)],
        capture_output=True,
        check=False,
    )
    return stripped if proc.returncode == 0 else ko
