"""The kernel's sample livepatch modules build unmodified for every profile, and
their structure reads the same on each.  Needs the profiles' headers and the
linux-source packages (`make setup`); deselect with `-m 'not kbuild'`."""

from __future__ import annotations

import pytest

from harness.kernel.profiles import load_profile, profile_names
from harness.modules.elf import read_patch
from harness.modules.external import check_file
from harness.modules.ko import declares_livepatch
from harness.modules.layout import layout_for
from harness.upstream.samples import (
    SAMPLE_NAMES,
    build_samples,
    sample_sources,
)

pytestmark = pytest.mark.kbuild

from tests.modules.test_elf import LAYOUT_61  # noqa: E402


@pytest.mark.parametrize("name", profile_names())
def test_samples_build_and_read(name: str) -> None:
    profile = load_profile(name)
    layout = layout_for(profile)
    if name == "debian-6.1":
        assert layout == LAYOUT_61
    samples = build_samples(profile)
    assert sorted(samples.modules) == sorted(SAMPLE_NAMES)
    sources = sample_sources(profile)
    for sample, ko in samples.modules.items():
        livepatch = declares_livepatch(sources[sample])
        module = check_file(ko, profile, livepatch)
        assert module.name == sample.replace("-", "_")
        if livepatch:
            assert read_patch(ko, layout).objects
    fix2 = read_patch(samples.ko("livepatch-shadow-fix2"), layout)
    assert [f.name for f in fix2.objects[0].funcs] == ["dummy_check", "dummy_free"]
