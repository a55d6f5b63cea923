"""apt, the one way the harness reaches Debian's packages: the host's configuration,
or a private one in the cache that names only other suites of Debian's mirror.

Every suite of another release (trixie-backports and sid for 7.x) comes through a
private configuration (`<cache>/apt/<suites>/`): the host's apt sources are never
changed, and what the harness fetches does not depend on what the host's
administrator configured.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.kernel.profiles import cache_root

MIRROR = os.environ.get("KLP_HARNESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 24 * 3600.0  # a private config's lists are refreshed once a day


def _as_root(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() == 0 else ["sudo", *cmd]


class Apt:
    """apt-get and apt-cache with the host's configuration (`suites` empty), or with a
    private one in the cache that names only `suites` of Debian's mirror."""

    def __init__(self, suites: tuple[str, ...] = ()) -> None:
        self.suites = suites
        self.dir = cache_root() / "apt" / "+".join(suites) if suites else None
        self.updated = False

    @property
    def where(self) -> str:
        return f"{', '.join(self.suites)} of {MIRROR}" if self.suites else "the host's apt lists"

    def options(self) -> list[str]:
        if self.dir is None:
            return []
        d = self.dir
        return [
            f"-oDir::Etc::SourceList={d / 'sources.list'}",
            f"-oDir::Etc::SourceParts={d / 'sources.list.d'}",
            f"-oDir::Etc::Preferences={d / 'preferences'}",
            f"-oDir::Etc::PreferencesParts={d / 'preferences.d'}",
            f"-oDir::State={d / 'state'}",
            f"-oDir::State::status={d / 'state/status'}",
            f"-oDir::Cache={d / 'cache'}",
            "-oAPT::Architecture=amd64",
            "-oAPT::Architectures::=amd64",
        ]

    def sources_text(self) -> str:
        return "".join(f"deb [signed-by={KEYRING}] {MIRROR} {s} main\n" for s in self.suites)

    def _prepare(self) -> None:
        """Write the private configuration (idempotent)."""
        assert self.dir is not None
        for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "state/status").touch()
        sources = self.dir / "sources.list"
        text = self.sources_text()
        if not sources.is_file() or sources.read_text() != text:
            atomic_write(sources, text)
            for stale in (self.dir / "state/lists").glob("*_Packages*"):
                stale.unlink()

    def lists_age(self) -> float | None:
        """Seconds since the private lists were fetched, None if they never were."""
        assert self.dir is not None
        lists = list((self.dir / "state/lists").glob("*_Packages*"))
        if len(lists) < len(self.suites):
            return None
        return time.time() - min(p.stat().st_mtime for p in lists)

    def ensure_lists(self) -> None:
        """A private configuration's lists, fetched if missing or a day old."""
        if self.dir is None:
            return
        self._prepare()
        age = self.lists_age()
        if age is None or age > LISTS_MAX_AGE:
            self.update()

    def update(self) -> None:
        """apt-get update: of the private lists, or of the host's (as root)."""
        print(f"setup: apt-get update ({self.where})", flush=True)
        if self.dir is None:
            run_checked(_as_root(["apt-get", "update", "-q"]))
        else:
            self._prepare()
            self.run(["apt-get", "update", "-q"])
        self.updated = True

    def run(self, argv: list[str], cwd: Path | None = None) -> str:
        return run_checked([argv[0], *self.options(), *argv[1:]], cwd)


def run_checked(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        shown = [w for w in cmd if not w.startswith("-o")]
        raise HarnessError(f"`{' '.join(shown)}` failed: {tail[0]}")
    return proc.stdout
