"""Pin the CPU code paths of torch's numerics, so that a run gives the same bits on any x86-64 CPU with AVX2.

torch picks its kernels by the CPU it runs on: ATen's vectorized kernels (AVX-512 or AVX2), MKL's
GEMM (one code path per instruction set, blocked by thread count) and oneDNN's primitives. Each
sums in another order, so the same commit, config and data give other weights on another CPU.
Every library has a setting that fixes its choice; `pins()` returns them for this machine:

  ATEN_CPU_CAPABILITY=avx2   ATen's kernels: the AVX2 build (read when the first op dispatches)
  MKL_CBWR=AVX2,STRICT       MKL's conditional numerical reproducibility: the AVX2 branch, and
                             (STRICT) GEMM results that do not depend on the number of threads
  ONEDNN_MAX_CPU_ISA=AVX2    oneDNN's primitives (not used by fp32 training on CPU; pinned so
                             that a path that reaches oneDNN does not undo the others)
  OMP_DYNAMIC=FALSE          OpenMP gives every parallel region the threads asked for, not fewer
                             under load (ATen's reductions split by thread; libgomp reads it at load)

AVX2 is the newest instruction set every x86-64 CPU since ~2013 has (Intel Haswell, AMD Zen).
Measured on an AVX-512 Xeon (benchmarks/cpu_pin.py, one thread): the toy pretraining's training
loop takes 1.09x (smoke model) to 1.20x (default model) as long pinned as unpinned. Not pinned: other machines (aarch64, ...), where these x86 values do not apply; x86
CPUs without AVX2 (torch would run AVX2 code on them and crash); and where the CPU flags cannot be
read (no /proc/cpuinfo). MKL documents its AVX2 branch for Intel CPUs; on AMD it may fall back to
its own dispatch (see the README's "Time and determinism").

The pins override whatever the outer environment says. SAFEDRIFT_CPU_PIN=off (or 0) leaves the
environment alone: each library then dispatches for this CPU (and your own settings apply).
Applied by the Snakefile (the job environment, which SLURM and conda jobs inherit), by
`python -m safedrift` before it imports anything, and by the zygote server before it imports
torch, so forked and plain jobs run under the same values.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

from safedrift.errors import SafedriftError

PIN_VAR = "SAFEDRIFT_CPU_PIN"
MODES = {"avx2": "avx2", "": "avx2", "1": "avx2", "off": None, "0": None}
X86_64 = frozenset({"x86_64", "amd64"})
AVX2_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_DYNAMIC": "FALSE",
}
# ATen's AVX2 kernels are built with FMA too (every AVX2 CPU has both).
AVX2_FLAGS = frozenset({"avx2", "fma"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def mode(environ) -> str | None:
    """The pin SAFEDRIFT_CPU_PIN asks for: "avx2" (the default) or None (off)."""
    value = environ.get(PIN_VAR, "").strip().lower()
    if value not in MODES:
        raise SafedriftError(f"{PIN_VAR}={environ[PIN_VAR]!r} is not a CPU pin: use avx2 (the default) or off")
    return MODES[value]


def pins(environ, machine: str | None = None, flags: frozenset[str] | None = None) -> tuple[dict[str, str], str]:
    """The variables to set on this machine, and why (one line, for logs and the README)."""
    if mode(environ) is None:
        return {}, f"off ({PIN_VAR}=off): each library dispatches for this CPU"
    unsupported = why_unsupported(machine, flags)
    if unsupported:
        return {}, f"none ({unsupported})"
    return dict(AVX2_PINS), " ".join(f"{k}={v}" for k, v in AVX2_PINS.items())


def why_unsupported(machine: str | None = None, flags: frozenset[str] | None = None) -> str | None:
    """Why this machine cannot take the AVX2 pins, or None if it can."""
    machine = (machine or platform.machine()).lower()
    if machine not in X86_64:
        return f"{machine}: the pins are x86-64 values"
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return "CPU flags unreadable: no /proc/cpuinfo"
    if not AVX2_FLAGS <= flags:
        return "this CPU lacks AVX2/FMA"
    return None


def apply(environ: MutableMapping[str, str] | None = None) -> str:
    """Set this machine's pins in `environ` (os.environ by default), overriding outer values. Returns `pins`'s why."""
    environ = os.environ if environ is None else environ
    values, why = pins(environ)
    environ.update(values)
    return why
