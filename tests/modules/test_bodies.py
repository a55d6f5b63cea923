"""A scenario's own replacement bodies: pasted behind #line so compile errors name the
scenario file and line, counted on entry; real functions without a body get the
default that counts and runs the original (any signature)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.modules.bodies import body_error
from harness.modules.render import render_sources
from harness.scenario.loader import load_scenario

SCENARIO = '''\
description = "Bodies."
steps = ["load lp"]

[[patch]]
name = "lp"

[[patch.object]]
name = "vmlinux"
funcs = [
  { name = "version_proc_show", headers = ["linux/seq_file.h"], body = """
static int version_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "fixed\\\\n");
	return 0;
}
""" },
  { name = "__do_sys_getpid", sympos = 1 },
  { name = "uptime_proc_show", file = "uptime.c" },
]
'''


def load(tmp_path: Path, text: str = SCENARIO) -> Path:
    (tmp_path / "uptime.c").write_text(
        "static int uptime_proc_show(struct seq_file *m, void *v)\n{\n\treturn 0;\n}\n"
    )
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_bodies_render_with_line_directives(tmp_path: Path) -> None:
    scenario = load_scenario(load(tmp_path))
    spec = scenario.patches[0].objects[0].spec("version_proc_show")
    assert spec.body is not None and spec.body.line == 11  # the line of `static int ...`
    c = render_sources(scenario)["lp"]
    assert "#include <linux/seq_file.h>" in c
    assert f'#line 11 "{scenario.path}"' in c
    assert f'#line 1 "{tmp_path / "uptime.c"}"' in c
    assert "#define version_proc_show klp_harness_new_0_version_proc_show" in c
    assert "{ atomic_long_inc(&klp_harness_calls[0]);" in c
    # after each body the generated file's own numbering resumes
    lines = c.split("\n")
    for number, line in enumerate(lines, start=1):
        if line.startswith("#line ") and line.endswith('"lp.c"'):
            assert line == f'#line {number + 1} "lp.c"'
    # the default for a real function: counts and jumps into the original
    assert "klp_harness_new_0___do_sys_getpid:" in c
    assert "lock incq klp_harness_calls+8(%rip)" in c
    assert ".old_sympos = 1," in c


def test_body_must_define_the_function(tmp_path: Path) -> None:
    text = SCENARIO.replace("static int version_proc_show(", "static int other_show(")
    with pytest.raises(ScenarioError, match=r"funcs\[0\]\.body: defines no version_proc_show"):
        render_sources(load_scenario(load(tmp_path, text)))


def test_body_errors(tmp_path: Path) -> None:
    for bad, message in [
        ('file = "uptime.c"', 'file = "../x.c"'),
        ('headers = ["linux/seq_file.h"]', 'headers = ["../x.h"]'),
    ]:
        with pytest.raises(ScenarioError):
            load_scenario(load(tmp_path, SCENARIO.replace(bad, message)))
    with pytest.raises(ScenarioError, match="give either body or file"):
        load_scenario(
            load(tmp_path, SCENARIO.replace('file = "uptime.c"', 'file = "u.c", body = "x"'))
        )


def test_compile_error_names_the_scenario_line() -> None:
    sources = {"lp": '#line 12 "tests/x.toml"\nint f(void) {}\n#line 3 "lp.c"\n'}
    log = (
        "  CC [M]  /tmp/b/lp.o\n"
        "tests/x.toml:13:9: error: expected ';' before 'return'\n"
        "/tmp/b/lp.c:40:1: error: something else\n"
    )
    assert body_error(log, sources) == "tests/x.toml:13: error: expected ';' before 'return'"
    assert body_error("lp.c:1:1: error: x", {"lp": "int x;"}) is None


def test_unexported_symbol_named() -> None:
    sources = {"lp": '#line 2 "x.toml"\nint f(void) { return g(); }\n#line 4 "lp.c"\n'}
    log = 'ERROR: modpost: "get_avenrun" [/tmp/b/lp.ko] undefined!\n'
    assert body_error(log, sources) == (
        "lp: a body uses 'get_avenrun', which the kernel does not export to modules"
    )
