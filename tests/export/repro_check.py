"""The manual check of the committed reproducers (docs/findings.md, "How the
reproducers were checked"): each directory is built with its own Makefile against a
profile's headers, then run by its run.sh alone in a guest of that profile.

    .venv/bin/python -m tests.export.repro_check debian-6.1 debian-6.12 debian-7.3 [REPRO...]

(REPRO: the name of a directory under docs/findings/, to check only those.)  Not a
pytest module (some 25 s of guest time per reproducer and profile).  The 7.3 profile
builds its modules in the harness's build root, which has the kernel's compiler and
not libc's headers: a reproducer's user-space programs are built on the host there
(the BPF loader static, for the guest; klp-rela first, as `make modules` runs it).
run.sh's output goes to the guest's serial console, read from the host's copy of it:
a kernel warning ends the harness's use of the guest's command channel, not run.sh.
Outputs: results/repro-check/<reproducer>-<profile>-{build.log,run.txt}.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from harness.kernel import buildroot
from harness.kernel.profiles import KernelProfile, cache_root, load_profile
from harness.modules.kbuild import compiler_for
from harness.runner.manager import GuestManager

ROOT = Path(__file__).resolve().parents[2]
REPROS = sorted(p for p in (ROOT / "docs" / "findings").iterdir() if (p / "run.sh").is_file())
OUT = ROOT / "results" / "repro-check"
END = "REPRO-EXIT="


def build(repro: Path, profile: KernelProfile, work: Path) -> str:
    """`make KDIR=... CC=...` in a copy of `repro`; returns the log (raises on failure)."""
    shutil.copytree(repro, work, dirs_exist_ok=True)
    argv = ["make", f"KDIR={profile.build_dir}", f"CC={compiler_for(profile)}"]
    root = buildroot.root_for(profile)
    steps = [argv]
    if root is not None:
        tree = cache_root() / "kernels" / profile.name
        steps = [buildroot.wrap(root, [*argv, "modules"], work, read_only=[tree], writable=[work])]
        if (work / "klp-rela.c").is_file():
            steps.insert(0, ["make", "klp-rela"])
        if (work / "klp-bpf.c").is_file():
            steps.append(["make", "klp-bpf"])
    log = ""
    for step in steps:
        proc = subprocess.run(step, cwd=work, capture_output=True, text=True, check=False)
        log += f"$ {' '.join(step)}\n{proc.stdout}{proc.stderr}"
        if proc.returncode != 0:
            raise SystemExit(f"{repro.name} on {profile.name}: make failed\n{log[-3000:]}")
    return log


def run(work: Path, profile: KernelProfile) -> str:
    """run.sh in a guest of its own; its output as the serial console showed it."""
    with GuestManager(profile, fast_guest=True) as manager:
        guest = manager.guest
        archive = work.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            for path in sorted(work.iterdir()):
                keep = path.suffix in (".ko", ".sh") or path.name.startswith("expected-")
                if keep or path.name == "klp-bpf":
                    tar.add(path, arcname=f"repro/{path.name}")
        guest.feed(archive, "busybox tar -x -C /root", check=True, timeout=120)
        log = Path(guest.console_log)
        start = len(log.read_text(errors="replace"))
        guest.run(f"(cd /root/repro && sh run.sh; echo {END}$?) > /dev/ttyS0 2>&1 < /dev/null &")
        deadline = time.monotonic() + 900
        while END not in log.read_text(errors="replace")[start:] and time.monotonic() < deadline:
            time.sleep(1)
        text = log.read_text(errors="replace")[start:]
        end = text.find(END)
        return text[: text.find("\n", end) + 1] if end >= 0 else text


def main(names: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    profiles = [n for n in names if n.startswith("debian-")]
    only = [n for n in names if not n.startswith("debian-")]
    for name in profiles:
        profile = load_profile(name)
        for repro in (r for r in REPROS if not only or r.name in only):
            with tempfile.TemporaryDirectory(prefix=f"{repro.name}-") as tmp:
                work = Path(tmp) / repro.name
                (OUT / f"{repro.name}-{name}-build.log").write_text(build(repro, profile, work))
                text = run(work, profile)
            (OUT / f"{repro.name}-{name}-run.txt").write_text(text)
            last = [line for line in text.splitlines() if line.strip()][-2:]
            print(f"[{name}] {repro.name}: {' / '.join(last)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
