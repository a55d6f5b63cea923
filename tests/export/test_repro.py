"""A standalone reproducer: expectations per series from the model, a POSIX run.sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.export.expect import Expect
from harness.export.repro import Expectation, _pick, export_repro
from tests.export.conftest import shipped


def test_files(tmp_path: Path) -> None:
    series = export_repro(shipped("coexist/03"), tmp_path, Expect.FIXED)
    assert series == ["6.1", "6.12", "7.3"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "Kbuild",
        "Makefile",
        "expected-6.1",
        "expected-6.12",
        "expected-7.3",
        "klp_lp.c",
        "kp_plain.c",
        "kp_post.c",
        "run.sh",
    ]
    assert (tmp_path / "Kbuild").read_text() == (
        "obj-m += klp_lp.o\nobj-m += kp_plain.o\nobj-m += kp_post.o\n"
    )
    makefile = (tmp_path / "Makefile").read_text()
    assert "KDIR ?= /lib/modules/$(shell uname -r)/build" in makefile
    assert "klp-bpf" not in makefile


def test_expectations_are_the_models(tmp_path: Path) -> None:
    export_repro(shipped("coexist/03"), tmp_path, Expect.FIXED)
    fixed = (tmp_path / "expected-7.3").read_text()
    assert "@@ step 2: load kp_post\nresult: fails: Device or resource busy\n" in fixed
    assert "runs: /proc/cmdline klp_lp: this has been live patched\n" in fixed
    assert "log: livepatch: enabling patch 'klp_lp'\n" in fixed
    assert "% modprobe" not in fixed  # the harness's own markers are not the kernel's
    export_repro(shipped("coexist/03"), tmp_path, Expect.AS_IS, "debian-7.3")
    as_is = (tmp_path / "expected-7.3").read_text()
    assert "@@ step 2: load kp_post\nresult: ok\n" in as_is
    assert "log: kp_post: kprobe on cmdline_proc_show was never hit\n" in as_is


def test_a_predicted_report_ends_the_expectation(tmp_path: Path) -> None:
    export_repro(shipped("bugs/05"), tmp_path, Expect.AS_IS)
    text = (tmp_path / "expected-6.1").read_text()
    assert text.endswith(
        "@@ step 4: attach cmdline_exit\n"
        "report: warning at kernel/trace/ftrace.c:7660 arch_ftrace_ops_list_func\n"
    )
    assert "@@ step 10: unload klp_cmdline" in (tmp_path / "expected-6.12").read_text()


def test_bpf_brings_its_loader(tmp_path: Path) -> None:
    export_repro(shipped("bugs/05"), tmp_path, Expect.FIXED)
    assert (tmp_path / "klp-bpf.c").is_file()
    makefile = (tmp_path / "Makefile").read_text()
    assert "all: modules klp-bpf" in makefile and "-static" in makefile
    assert "attach_bpf fexit cmdline_proc_show cmdline_exit" in (tmp_path / "run.sh").read_text()


@pytest.mark.parametrize("name", ["coexist/03", "bugs/05", "conformance/12"])
def test_run_sh_is_posix_sh(tmp_path: Path, name: str) -> None:
    export_repro(shipped(name), tmp_path, Expect.FIXED)
    run = tmp_path / "run.sh"
    assert run.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(run)], check=True)


@pytest.mark.parametrize(
    ("release", "picked"),
    [("6.1.0-57-amd64", "6.1"), ("6.12.118+deb12-amd64", "6.12"), ("6.14.2", "6.12"),
     ("7.3.4+deb13-amd64", "7.3"), ("8.0.1", "7.3"), ("5.15.0", "")],
)  # fmt: skip
def test_run_sh_picks_the_newest_series_not_newer(release: str, picked: str) -> None:
    expectations = [Expectation(s, []) for s in ("6.1", "6.12", "7.3")]
    script = (
        f"release={release}; major=${{release%%.*}}; rest=${{release#*.}}; "
        "minor=${rest%%[!0-9]*}; version=$((major * 1000 + minor))\n"
        + _pick(expectations)
        + '\necho "$SERIES"'
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == picked
