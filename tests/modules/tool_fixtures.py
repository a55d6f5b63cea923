"""The recipe of the checked-in modules in tests/data/kpatch/ and tests/data/klp-build/:
livepatch modules whose sections are laid out as kpatch-build's and klp-build's are,
for the fast tests of their readers (harness/modules/kpatch_format.py,
harness/modules/klp_build_format.py) and the guest checks of their life cycle.

Each fixture is one C source put together from three files of its tool's directory:
`sections.h` (the tool's structs, sections and helpers), the fixture `<name>.c` (the
sections' contents and the replacement functions) and the init (`hook.c`: what
kpatch's patch hook does; `init.c`: what klp-build's scripts/livepatch/init.c does).
It is built by the harness's own module build against the tool's profile (kpatch:
debian-6.1, klp-build: debian-7.3, in its build root), its debug information
stripped, then its livepatch relocation converted (harness/modules/klprela.py).

    .venv/bin/python -m tests.modules.tool_fixtures [kpatch|klp-build ...]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.kernel.profiles import load_profile
from harness.modules import klprela
from harness.modules.build import build_sources

DATA = Path(__file__).parents[1] / "data"


@dataclass(frozen=True)
class Tool:
    directory: Path
    profile: str
    init: str
    fixtures: tuple[str, ...]


TOOLS = {
    "kpatch": Tool(
        DATA / "kpatch",
        "debian-6.1",
        "hook.c",
        ("livepatch_kpatch_demo", "livepatch_kpatch_noreplace"),
    ),
    "klp-build": Tool(
        DATA / "klp-build",
        "debian-7.3",
        "init.c",
        ("livepatch_klp_build_demo", "livepatch_klp_build_noreplace"),
    ),
}


def source(tool: Tool, name: str) -> str:
    parts = ("sections.h", f"{name}.c", tool.init)
    return "\n".join((tool.directory / part).read_text() for part in parts)


def build(tool: Tool, dest: Path) -> dict[str, Path]:
    """Build `tool`'s fixtures into `dest` (stripped and converted): {name: .ko}."""
    sources = {name: source(tool, name) for name in tool.fixtures}
    result = build_sources(sources, load_profile(tool.profile), livepatch=tool.fixtures)
    made = {}
    for name, built in result.modules.items():
        out = dest / f"{name}.ko"
        subprocess.run(["objcopy", "--strip-debug", str(built), str(out)], check=True)
        if klprela.convert(out):
            found = klprela.problems(klprela.read(out))
            if found:
                raise SystemExit(f"{out}: {found[0]}")
        made[name] = out
    return made


def main(argv: list[str]) -> int:
    for key in argv or list(TOOLS):
        tool = TOOLS[key]
        with tempfile.TemporaryDirectory() as tmp:
            for name, path in build(tool, Path(tmp)).items():
                shutil.copyfile(path, tool.directory / f"{name}.ko")
                print(f"{tool.directory / name}.ko ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
