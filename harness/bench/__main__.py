"""`python -m harness.bench [NAME...]`: run the benchmarks (all, or those whose
`module.function` name contains one of the NAMEs)."""

from __future__ import annotations

import sys

from harness.bench import benchmarks
from harness.errors import HarnessError


def main(argv: list[str]) -> int:
    selected = [
        (name, func)
        for name, func in benchmarks()
        if not argv or any(word in name for word in argv)
    ]
    if not selected:
        print(f"no benchmark matches {' '.join(argv)}", file=sys.stderr)
        return 2
    status = 0
    for name, func in selected:
        print(f"== {name}", flush=True)
        try:
            func()
        except HarnessError as exc:  # e.g. a kernel profile that is not fetched
            print(f"   skipped: {exc}", flush=True)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
