"""A scenario's artifact folder as input: `klp-harness repro RESULTS/<run>/<profile>/<name>`
and `klp-harness run` of such folders run the scenario again, as it was run.

A folder is complete when it has `outcome.json` (written last, by the manager) and
`scenario.toml` (the scenario file as it was read).  What is read of outcome.json:
`scenario` (its name), `profile`, `status`, `command` (the command line that runs it
again, which carries the run's guest options) and `kernel` (`profile`, `release`,
`vermagic`): a folder that lacks any of them is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.runner.manager import OUTCOME, SCENARIO_COPY
from harness.scenario.external import ModuleNames
from harness.scenario.loader import load_scenario
from harness.scenario.types import Scenario

KEYS = ("scenario", "profile", "status", "command", "kernel")
KERNEL_KEYS = ("profile", "release", "vermagic")


@dataclass(frozen=True)
class ArtifactFolder:
    directory: Path
    scenario: str  # the scenario's name (its file's stem)
    profile: str
    status: str
    command: tuple[str, ...]  # `klp-harness run ...`, split into words
    release: str  # the kernel it ran on
    vermagic: str

    @property
    def scenario_file(self) -> Path:
        return self.directory / SCENARIO_COPY


def is_artifact_folder(path: Path) -> bool:
    return path.is_dir() and (path / OUTCOME).is_file()


def artifact_folders(path: Path) -> list[Path]:
    """`path` itself if it is a scenario's artifact folder, else the artifact folders
    under it (a whole run's results), sorted; [] if it holds none."""
    if is_artifact_folder(path):
        return [path]
    if not path.is_dir():
        return []
    return sorted(p.parent for p in path.rglob(OUTCOME) if p.is_file())


def read_folder(directory: Path) -> ArtifactFolder:
    """The run record of an artifact folder; UsageError (one line) if it is not one."""
    where = f"{directory}: not a scenario's artifact folder"
    try:
        data = json.loads((directory / OUTCOME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{where} (no {OUTCOME})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{directory / OUTCOME}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{directory / OUTCOME}: not a JSON object")
    missing = [key for key in KEYS if key not in data]
    kernel = data.get("kernel")
    if isinstance(kernel, dict):
        missing += [f"kernel.{key}" for key in KERNEL_KEYS if not isinstance(kernel.get(key), str)]
    elif "kernel" in data:
        missing.append("kernel.profile")
    if missing:
        raise UsageError(f"{directory / OUTCOME}: lacks {', '.join(missing)}")
    name, command = data["scenario"], data["command"]
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise UsageError(f"{directory / OUTCOME}: scenario {name!r} is no scenario name")
    if not isinstance(command, str):
        raise UsageError(f"{directory / OUTCOME}: command is not a command line")
    if not (directory / SCENARIO_COPY).is_file():
        raise UsageError(f"{where} (no {SCENARIO_COPY})")
    assert isinstance(kernel, dict)
    return ArtifactFolder(
        directory,
        name,
        str(data["profile"]),
        str(data["status"]),
        tuple(shlex.split(command)),
        kernel["release"],
        kernel["vermagic"],
    )


def load_folder(folder: ArtifactFolder, names: ModuleNames | None = None) -> Scenario:
    """The scenario of an artifact folder, under its own name (the copy is named
    scenario.toml; files it names are looked up beside it)."""
    scenario = load_scenario(folder.scenario_file, names)
    return dataclasses.replace(scenario, path=folder.directory / f"{folder.scenario}.toml")
