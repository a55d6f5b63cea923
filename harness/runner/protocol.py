"""What every step's guest script shares with the runner that reads it
(docs/runner-protocol.md): where a step's tool leaves its error message, and the
lines that report an action's exit status and that message."""

from __future__ import annotations

ERR_FILE = "/run/klp-step.err"  # the step's tool writes its error message here
# After an action script: its exit status ($__rc) and, on failure, the tool's message.
REPORT = (
    'echo @@action; echo "$__rc"; [ "$__rc" = 0 ] || '
    f'{{ while IFS= read -r __l; do echo "$__l"; done < {ERR_FILE}; }} 2>/dev/null'
)
