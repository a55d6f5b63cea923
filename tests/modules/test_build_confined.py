"""A build is confined: a body may include the kernel's headers and files beside its
scenario, nothing else of the host.  A body that reads another file of the host (an
include, computed or not, or an `.incbin`) is refused in one line naming it, before
the compiler runs, so no build log can quote it.  On the default profile (on the
host) and on debian-7.3 (in its build root).

Needs the profiles' headers (`make setup`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.kernel.profiles import load_profile
from harness.modules.build import build_modules
from harness.scenario.loader import load_scenario

pytestmark = pytest.mark.kbuild

SCENARIO = '''\
description = "a body that includes {what}"
steps = ["load klp_confined", "unload klp_confined"]

[[patch]]
name = "klp_confined"

[[patch.object]]
name = "vmlinux"
funcs = [{{ name = "cmdline_proc_show", headers = ["linux/seq_file.h"], body = """
{line}
static int cmdline_proc_show(struct seq_file *m, void *v)
{{
	seq_puts(m, "confined\\\\n");
	return 0;
}}
""" }}]
'''
SECRET = "klp-confined-secret-line"

CASES = {
    "an absolute include": ('#include "{secret}"', "includes {secret}"),
    "a computed include": ("#define F <{secret}>\n#include F", "includes {secret}"),
    "a relative include out": ('#include "../../../../../../../..{secret}"', "includes {secret}"),
    "an embedded file": ('asm(".incbin \\\\"{secret}\\\\"");', "embeds a file (.incbin)"),
}


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host file outside the scenario's directory, whose first line is recognisable."""
    path = tmp_path_factory.mktemp("host") / "secret"
    path.write_text(f"{SECRET} = 1;\n")
    return path


@pytest.mark.parametrize("profile_name", ["debian-6.1", "debian-7.3"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_body_reading_a_host_file_is_refused(
    tmp_path: Path, secret: Path, case: str, profile_name: str
) -> None:
    line, message = (text.format(secret=secret) for text in CASES[case])
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.format(what=case, line=line))
    builds = tmp_path / "builds"
    with pytest.raises(UsageError) as info:
        build_modules(load_scenario(path), load_profile(profile_name), cache_dir=builds)
    # in a build root (debian-7.3) the host's /tmp is not even there: the compiler's
    # "No such file" names the include too
    text = str(info.value)
    assert text.startswith(f"{path}") and "\n" not in text
    assert message in text or (profile_name == "debian-7.3" and f"{secret}: No such file" in text)
    leaked = [p for p in builds.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_kernel_headers_and_files_beside_the_scenario_build(tmp_path: Path) -> None:
    (tmp_path / "text.h").write_text('#define CONFINED_TEXT "beside\\n"\n')
    body = f'#include <linux/kernel.h>\n#include "{tmp_path / "text.h"}"'
    path = tmp_path / "s.toml"
    path.write_text(
        SCENARIO.format(what="headers", line=body).replace('"confined\\\\n"', "CONFINED_TEXT")
    )
    result = build_modules(
        load_scenario(path), load_profile("debian-6.1"), cache_dir=tmp_path / "b"
    )
    assert list(result.modules) == ["klp_confined"]
