"""Starting QEMU under a pty (pexpect), with some descriptors passed through.

ptyprocess closes every descriptor but the standard ones in the child, unless named in
its `pass_fds`; pexpect does not pass that list on, hence a subclass.  A resumed guest
needs one: QEMU reads its saved state from an inherited descriptor (`-incoming fd:N`,
harness.guest.qemu.incoming_args).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pexpect
import ptyprocess


class _Spawn(pexpect.spawn):  # type: ignore[misc]
    """pexpect's spawn, keeping `pass_fds` open in the child."""

    def __init__(self, *args: Any, pass_fds: tuple[int, ...] = (), **kwargs: Any) -> None:
        self._pass_fds = pass_fds
        super().__init__(*args, **kwargs)

    def _spawnpty(self, args: list[str], **kwargs: Any) -> Any:
        return ptyprocess.PtyProcess.spawn(args, pass_fds=self._pass_fds, **kwargs)


def _inheriting(fds: tuple[int, ...], preexec: Callable[[], None]) -> Callable[[], None]:
    """`preexec`, after making `fds` survive the exec in the child only (Python opens
    them close-on-exec, so no other child of this process gets them)."""

    def setup() -> None:
        for fd in fds:
            os.set_inheritable(fd, True)
        preexec()

    return setup


def spawn_qemu(argv: list[str], preexec: Callable[[], None], pass_fds: tuple[int, ...]) -> Any:
    """QEMU under pexpect, its console (stdio) on a pty: text, not timed out by pexpect
    (callers keep their own deadlines), read in large chunks.  Raises pexpect's
    ExceptionPexpect if it cannot be started."""
    return _Spawn(
        argv[0],
        argv[1:],
        pass_fds=pass_fds,
        timeout=None,
        maxread=65536,
        encoding="utf-8",
        codec_errors="replace",
        preexec_fn=_inheriting(pass_fds, preexec),
        dimensions=(24, 200),
    )
