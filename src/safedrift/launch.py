"""Run a stage in this process: import `safedrift.<stage>` and call its `main(argv)`.

Errors a user can fix (bad config, data or model path) are `SafedriftError`s: they print one
line naming the file or key, not a traceback, and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

from safedrift.errors import SafedriftError


def run_stage(stage: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(f"safedrift.{stage}")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("safedrift"):
            print(f"safedrift: unknown stage {stage!r} (no module safedrift.{stage})", file=sys.stderr)
            return 2
        raise
    try:
        result = module.main(argv)
    except SafedriftError as e:
        print(f"safedrift {stage}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)
