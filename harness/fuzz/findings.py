"""Findings, as syzkaller keeps them: a title and a signature per difference or kernel
report, duplicates merged, the shrunk scenario and its report kept in a corpus folder.

The signature says what went wrong, not which history showed it: who is judged (the
model, or a variant), the kind of the first differing step (its verb), the record
fields that differ there, and the kernel report the kernel made (`warning at
FILE:LINE FUNCTION`), or for a crash or a hurt kernel its first line without numbers
(a hung task's with the function it hangs in, as syzkaller titles it).
Two histories that differ the same way at the same kind of step are one finding; the
shortest shrunk scenario of it is kept.

The corpus is `<results>/corpus/<id>/`, `id` the signature's digest:

* `scenario.toml`: the shortest shrunk history up to its first difference (runnable
  with `klp-harness run`, its comments say how it was found and what differed);
* `report.txt`: that run's first-difference report;
* `finding.json`: title, signature, variant, how often it was seen (found and shrunk,
  or seen again unshrunk), per profile, the shortest length, the seeds;
* `<profile>-<digest>/`: the artifacts of each rerun of a shrunk history (kernel
  log, console, predicted and observed JSON).

Nothing goes into tests/scenarios/found/: a person reads a finding and decides what
it is (a model fix, a kernel finding, a harness fix) before a scenario is kept there.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.files import atomic_write
from harness.outcome.scenario import ScenarioOutcome

CORPUS = "corpus"
FINDING = "finding.json"
SCENARIO = "scenario.toml"
REPORT = "report.txt"

# Numbers and addresses (`0x...`, and the bare 16-digit hex an oops prints: "page
# fault for address: ffffffffc03ff085"), which differ from one run to the next.
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b|\b\d+\b")


@dataclass(frozen=True)
class Signature:
    """What identifies a finding, and the title a person reads."""

    who: str  # "model" or the variant's name
    kind: str  # the first differing step's verb ("load", "call", ...), or "crash"
    fields: tuple[str, ...]  # the record fields that differ there
    report: str  # the kernel's report (`warning at FILE:LINE FUNCTION`), or ""

    @property
    def text(self) -> str:
        return "|".join([self.who, self.kind, ",".join(self.fields), self.report])

    @property
    def id(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]

    @property
    def title(self) -> str:
        where = f"a crash or a hurt kernel: {self.report}" if self.kind == "crash" else ""
        if not where:
            where = f"`{self.kind}` ({', '.join(self.fields)})"
            if self.report:
                where += f", kernel report: {self.report}"
        if self.who == "model":
            return f"the model differs at {where}"
        return f"variant {self.who} refuted at {where}"


# A call trace's frame, `[ts]  func+0x1a/0x40 [module]`; a `? ` one is a guess.
_FRAME = re.compile(r"^(?:\[\s*[\d.]+\]\s*)?\s+(\? )?([A-Za-z_]\w*)(?:\.[\w.]+)?\+0x", re.M)
# How a task waits, not what for: the frames a hung task's trace starts with.
_WAITING = re.compile(
    r"_*(schedule\w*|wait_for_\w+|\w*wait_rcu_gp|synchronize_\w+|\w*mutex_lock\w*"
    r"|rwsem_down\w*|down_\w+|\w*sleep\w*|io_schedule\w*|__wait_for_common)$"
)


def hung_in(error: str) -> str:
    """The first frame of a hung task's call trace that is not a way of waiting: what
    it waits in ("hung in ftrace_shutdown"), or "" when none is there."""
    if "blocked for more than" not in error:
        return ""
    for frame in _FRAME.finditer(error):
        guess, func = frame.group(1), frame.group(2)
        if not guess and not _WAITING.fullmatch(func):
            return func
    return ""


def signature_of(outcome: ScenarioOutcome, who: str) -> Signature:
    """The signature of an outcome that is not a pass."""
    mismatch = outcome.mismatch
    if mismatch is None:  # a crash, a taint the scenario raised, a harness failure
        error = outcome.error or "failed"
        first = _NUMBERS.sub("N", error.splitlines()[0]).strip()
        where = hung_in(error)
        return Signature(who, "crash", (), f"{first} hung in {where}" if where else first)
    observed = outcome.observed[mismatch.index] if mismatch.index < len(outcome.observed) else None
    report = observed.report if observed is not None else ""
    kind = mismatch.step.split()[0] if mismatch.step else "?"
    return Signature(who, kind, tuple(sorted(set(mismatch.fields))), report)


@dataclass
class Entry:
    """One finding in the corpus (finding.json)."""

    signature: str
    title: str
    who: str
    seen: int = 0  # found and shrunk, or met again while generating
    shrunk: int = 0  # of those, found and shrunk
    profiles: dict[str, int] = field(default_factory=dict)
    length: int = 0  # steps of the kept scenario
    seeds: list[int] = field(default_factory=list)
    first_seen: str = ""
    aliases: list[str] = field(default_factory=list)  # the unshrunk histories' signatures

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Added:
    """What adding a finding did: its folder, whether it is new, whether its
    scenario is the one kept."""

    folder: Path
    entry: Entry
    new: bool
    kept: bool


class Corpus:
    """`<results>/corpus/`: one folder per signature.  One writer (the parent of the
    workers) adds to it."""

    def __init__(self, results: Path) -> None:
        self.root = results / CORPUS
        self.entries: dict[str, Entry] = {}
        self.aliases: dict[str, str] = {}  # an unshrunk signature's id -> the entry's id
        for path in sorted(self.root.glob(f"*/{FINDING}")) if self.root.is_dir() else []:
            entry = Entry(**json.loads(path.read_text()))
            self.entries[path.parent.name] = entry
            for alias in entry.aliases:
                self.aliases[alias] = path.parent.name

    def folder(self, signature: Signature) -> Path:
        return self.root / signature.id

    def known(self) -> set[str]:
        """The ids of every signature met so far (shrunk ones and their aliases)."""
        return set(self.entries) | set(self.aliases)

    def add(
        self,
        signature: Signature,
        profile: str,
        scenario: str,
        report: str,
        length: int,
        seed: int,
        unshrunk: Signature | None = None,
    ) -> Added:
        """A found and shrunk difference: a new entry, or one more sighting of a known
        one (its scenario replaced when this one is shorter)."""
        ident = signature.id
        new = ident not in self.entries
        entry = self.entries.setdefault(
            ident,
            Entry(
                signature.text,
                signature.title,
                signature.who,
                first_seen=time.strftime("%Y-%m-%dT%H:%M:%S"),
            ),
        )
        entry.seen += 1
        entry.shrunk += 1
        entry.profiles[profile] = entry.profiles.get(profile, 0) + 1
        if seed not in entry.seeds:
            entry.seeds.append(seed)
        if unshrunk is not None and unshrunk.id != ident and unshrunk.id not in entry.aliases:
            entry.aliases.append(unshrunk.id)
            self.aliases[unshrunk.id] = ident
        folder = self.root / ident
        folder.mkdir(parents=True, exist_ok=True)
        kept = new or length < entry.length
        if kept:
            entry.length = length
            atomic_write(folder / SCENARIO, scenario)
            atomic_write(folder / REPORT, report)
        self._save(ident)
        return Added(folder, entry, new, kept)

    def seen_again(self, ident: str, profile: str) -> Entry | None:
        """A known finding met again while generating (not shrunk again)."""
        ident = self.aliases.get(ident, ident)
        entry = self.entries.get(ident)
        if entry is None:
            return None
        entry.seen += 1
        entry.profiles[profile] = entry.profiles.get(profile, 0) + 1
        self._save(ident)
        return entry

    def _save(self, ident: str) -> None:
        atomic_write(
            self.root / ident / FINDING,
            json.dumps(self.entries[ident].to_json(), indent=1, sort_keys=True) + "\n",
        )
