"""HTML building blocks of the report: escaping, relative links, the page and its CSS.

Every string a run produced (kernel lines, step text, module and patch names, error
messages) is untrusted and goes through `text`, in element content and in attribute
values alike.  Links are relative and percent-encoded, so that the pages work from a
CI artifact opened as files.  The CSS is inlined into every page: a page must work
when it is the only file a reader opened, and each is rendered on its own while a run
goes.  Plain CSS for a 1280x800 screen and a phone (390 px): wide tables and the
timeline scroll sideways in their own box instead of squeezing; colours have a dark
variant; status colours are the same on the matrix, the badges and the timeline.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def text(value: object) -> str:
    """Escaped text, control characters shown as `\\xNN` (a console log may hold any
    byte; HTML has no way to show most of them)."""
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", str(value))
    return html.escape(shown, quote=True)


def link(*segments: str) -> str:
    """A relative URL from path segments (names may hold `#`, `?`, `%` or spaces)."""
    return "/".join(quote(segment, safe="") for segment in segments)


def page(title: str, body: str) -> str:
    """A whole self-contained page."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


CSS = """
:root{--fg:#1d2329;--bg:#fff;--muted:#5f6b76;--rule:#d5dbe1;--head:#f2f4f7;
--pass:#1a7f37;--pass-bg:#dcf5e3;--diff:#b42318;--diff-bg:#fde3e1;--warn:#9a6700;
--warn-bg:#fff3c4;--skip:#57606a;--skip-bg:#eef1f4;--accent:#0b5cad;--nop:#8250df;
--ran:#1a7f37;--model:#0b5cad;--tr:#d97706;--tr-bg:#fde9c8}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b1;
--rule:#30363d;--head:#161b22;--pass:#56d364;--pass-bg:#12361e;--diff:#ff7b72;
--diff-bg:#4a1613;--warn:#e3b341;--warn-bg:#3b2e0a;--skip:#9da7b1;--skip-bg:#21262d;
--accent:#58a6ff;--nop:#bc8cff;--ran:#56d364;--model:#58a6ff;--tr:#f0a030;--tr-bg:#3d2a0c}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header,main{max-width:1400px;margin:0 auto;padding:0 16px}
header{padding-top:8px}
h1{font-size:1.35rem;margin:.3em 0}h1 small{font-weight:normal;color:var(--muted)}
h2{font-size:1.1rem;margin:1.2em 0 .4em;border-bottom:1px solid var(--rule)}
h3{font-size:.85rem;margin:0 0 .3em;color:var(--muted);font-weight:600}
a{color:var(--accent)}
code,pre,.line,.ln{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;
font-size:12.5px}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.note,.legend,.caption{color:var(--muted)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse}
th,td{border:1px solid var(--rule);padding:4px 6px;vertical-align:top;text-align:left}
thead th{background:var(--head);position:sticky;top:0}
.status{display:inline-block;padding:0 .5em;border-radius:9px;font-weight:600}
.pass{color:var(--pass);background:var(--pass-bg)}
.difference{color:var(--diff);background:var(--diff-bg)}
.host-failure,.incomplete{color:var(--warn);background:var(--warn-bg)}
.refused,.skipped,.none{color:var(--skip);background:var(--skip-bg)}
#matrix td.cell{white-space:nowrap}
#matrix td.cell a{color:inherit;font-weight:600}
#matrix td.cell a.first-difference-link{font-weight:normal;text-decoration:underline}
#matrix .time{font-size:12px;opacity:.8}
#problems li{margin:.2em 0;overflow-wrap:anywhere}
#matrix th[scope=row]{position:sticky;left:0;background:var(--bg)}
pre.error,pre.report,pre.command{background:var(--head);padding:8px;border-radius:4px;
border:1px solid var(--rule)}
pre.error,pre.report{white-space:pre;overflow-x:auto}
#steps{width:100%;min-width:720px;table-layout:fixed}
#steps col.c-field{width:7em}
#steps tbody.step{border-top:3px solid var(--rule)}
#steps tr.step-head th{background:var(--head);font-weight:normal}
#steps tr.step-head .step-number{font-weight:700;margin-right:.4em}
#steps .verdict{float:right;color:var(--muted)}
#steps tbody.differs .verdict{color:var(--diff);font-weight:600}
#steps tbody.not-run{opacity:.6}
#steps tbody.first-difference{outline:3px solid var(--diff);outline-offset:-2px}
#steps tbody.first-difference tr.step-head th{background:var(--diff-bg)}
#steps tbody:target tr.step-head th{box-shadow:inset 4px 0 var(--accent)}
#steps tr.field.differs th{color:var(--diff)}
#steps tr.field.differs td{background:var(--diff-bg)}
#steps td{overflow-wrap:anywhere}
.line{display:block;white-space:pre-wrap}
.line.only{font-weight:700;text-decoration:underline wavy var(--diff)}
.detail{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.detail>div{min-width:0}
.funcstacks{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-end}
.funcstacks h3{flex-basis:100%}
.funcstack{border:1px solid var(--rule);border-radius:4px;padding:4px;min-width:9em}
.fs-name{font:600 12px ui-monospace,monospace;margin-bottom:3px}
.fs-layers{display:flex;flex-direction:column-reverse;list-style:none;margin:0;padding:0;
gap:2px}
.fs-layers li,.legend .layer{border:1px solid var(--rule);border-radius:3px;
padding:1px 6px;font:12px ui-monospace,monospace;background:var(--head)}
.fs-layers li.base{border-style:dashed}
.layer.nop{color:var(--nop);border-color:var(--nop)}
.fs-layers li.ran,.legend .ran{border:2px solid var(--ran);background:var(--pass-bg);
font-weight:700}
.fs-layers li.ran::after{content:" ◀ ran";color:var(--ran)}
.fs-layers li.predicted,.legend .predicted{outline:2px dashed var(--model);outline-offset:1px}
.fs-layers li.predicted:not(.ran)::after{content:" ◀ model";color:var(--model)}
.unexpected{color:var(--diff);margin:.2em 0 0;font-size:12px}
.sysfs-state table{font:12px ui-monospace,monospace}
.sysfs-state tr.in-transition td{background:var(--tr-bg)}
.sysfs-state tr.disabled td{color:var(--muted)}
.kernel-log{flex:1 1 320px}
.kernel-log pre{background:var(--head);padding:6px;border-radius:4px}
.ln{display:block}.ln.cmd{color:var(--muted)}.ln.transition{color:var(--tr)}
.ln.callback{color:var(--nop)}.ln.signal{color:var(--diff);font-weight:700}
.timeline{overflow-x:auto;border:1px solid var(--rule);border-radius:4px;padding:4px}
.timeline-svg{display:block;width:100%;min-width:880px;height:auto;font:12px system-ui,sans-serif}
.timeline-svg text{fill:var(--fg)}
.timeline-svg .tick{stroke:var(--rule);stroke-dasharray:2 3}
.timeline-svg .tick-label{fill:var(--muted)}
.timeline-svg .lane-rule{stroke:var(--rule)}
.timeline-svg .lane-label{font-weight:600}
.tl-step rect{fill:var(--pass-bg);stroke:var(--pass)}
.tl-step.differs rect{fill:var(--diff-bg);stroke:var(--diff)}
.tl-step.first-difference rect{fill:var(--diff);stroke:var(--diff)}
.tl-step.first-difference text{fill:var(--bg)}
.tl-transition rect{fill:var(--tr-bg);stroke:var(--tr)}
.tl-transition.unpatching rect{stroke-dasharray:4 2}
.tl-transition.unfinished rect{stroke:var(--diff)}
.tl-actor rect{fill:var(--skip-bg);stroke:var(--rule)}
.tl-actor.ps0 rect{fill:var(--tr-bg);stroke:var(--tr)}
.tl-actor.ps1 rect{fill:var(--pass-bg);stroke:var(--pass)}
.tl-callback.pre text{fill:var(--nop)}.tl-callback.post text{fill:var(--accent)}
.tl-signal text,.tl-report text{fill:var(--diff)}
.tl-retries text{fill:var(--tr);font-weight:600}.tl-due text{fill:var(--model)}
#artifacts ul{columns:2 16em;padding-left:1.2em}
@media (max-width:600px){header,main{padding:0 8px}h1{font-size:1.1rem}
#steps .verdict{float:none;display:block}
#matrix th[scope=row]{max-width:11em;overflow-wrap:anywhere}}
"""
