"""`python -m safedrift <stage> [args...]`: run one pipeline stage.

A stage is a module of this package with a `main(argv)` function, named by its dotted path
below `safedrift` (e.g. `world.splits`, `finetune.run`). Every Snakemake rule calls this
entry point, so a stage can also be run by hand with the same arguments. With
SAFEDRIFT_ZYGOTE set to a folder of running fork servers (`safedrift.zygote`), the stage runs in
a process forked from one that has already imported torch and friends; the result is the same.
Both pin torch's CPU code paths first (`safedrift.cpu_pin`; SAFEDRIFT_CPU_PIN=off to opt out).
"""

from __future__ import annotations

import sys

from safedrift import cpu_pin, zygote
from safedrift.errors import SafedriftError
from safedrift.launch import run_stage


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:  # before anything imports torch, here or in the zygote server (which pins the same way)
        cpu_pin.apply()
    except SafedriftError as e:
        print(f"safedrift: {e}", file=sys.stderr)
        return 2
    status = zygote.request(argv[0], argv[1:])
    return run_stage(argv[0], argv[1:]) if status is None else status


if __name__ == "__main__":
    sys.exit(main())
