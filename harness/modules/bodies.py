"""Compile errors in a scenario's own function bodies, reported against the scenario.

A body is pasted into the generated C behind a `#line N "<scenario file>"` directive, so
the compiler already names the scenario file (or the .c file beside it) and its line;
this finds the first such error in a failed build's log.  It is the user's input that
is wrong, so it is a UsageError (exit 2) in the scenario's own terms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_LINE_DIRECTIVE = re.compile(r'^#line \d+ "(?P<file>[^"]+)"$', re.MULTILINE)


def body_files(sources: Mapping[str, str]) -> set[str]:
    """Files other than the generated ones that the sources' #line directives name."""
    own = {f"{name}.c" for name in sources}
    return {
        m["file"]
        for text in sources.values()
        for m in _LINE_DIRECTIVE.finditer(text)
        if m["file"] not in own
    }


_UNDEFINED = re.compile(r'modpost: "(?P<sym>[^"]+)" \[(?:.*/)?(?P<mod>[^/\]]+)\.ko\] undefined!')


def body_error(log: str, sources: Mapping[str, str]) -> str | None:
    """`<file>:<line>: error: <message>` for the first compiler error in a body, or
    the symbol a body uses that the kernel does not export."""
    files = body_files(sources)
    if not files:
        return None
    for undefined in _UNDEFINED.finditer(log):
        mod = undefined["mod"]
        if mod in sources and body_files({mod: sources[mod]}):
            symbol = undefined["sym"]
            return f"{mod}: a body uses {symbol!r}, which the kernel does not export to modules"
    names = "|".join(re.escape(f) for f in sorted(files, key=len, reverse=True))
    pattern = re.compile(
        rf"^(?P<file>{names}):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<msg>.*)$"
    )
    for line in log.splitlines():
        match = pattern.match(line.strip())
        if match:
            return f"{match['file']}:{match['line']}: error: {match['msg']}"
    return None
