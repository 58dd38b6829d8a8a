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
loop takes 1.09x (smoke model) to 1.20x (default model) as long pinned as unpinned. Not pinned: other
machines (aarch64, ...), where these x86 values do not apply; x86 CPUs without AVX2 (torch would run
AVX2 code on them and crash); and where the CPU flags cannot be read (no /proc/cpuinfo).

MKL honours its AVX2 branch on Intel CPUs only: on an AMD EPYC every MKL_CBWR branch but COMPATIBLE
gives the bits of MKL's own dispatch, so Intel and AMD machines train other weights under `avx2`
(`pins()` says so in its line, which run cards and the README record). SAFEDRIFT_CPU_PIN=portable
pins MKL_CBWR=COMPATIBLE,STRICT (SSE2, the branch MKL documents as reproducible on Intel and non-Intel
CPUs) and caps every job at one torch thread (`thread_cap`: unlike the AVX2 branch, COMPATIBLE sums in
another order on two threads, STRICT or not). It costs 1.86x the default pins' pretraining loop on the
default toy model (AMD EPYC, one thread, benchmarks/cpu_pin.py --compare portable,avx2), so it is a
choice, not the default.

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
MODES = {"avx2": "avx2", "": "avx2", "1": "avx2", "portable": "portable", "off": None, "0": None}
X86_64 = frozenset({"x86_64", "amd64"})
AVX2_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_DYNAMIC": "FALSE",
}
# MKL's COMPATIBLE branch (SSE2 without the approximate rcpps/rsqrtps) is the one branch MKL documents
# as reproducible on Intel and non-Intel CPUs alike; on AMD every other MKL_CBWR branch falls back to
# MKL's own dispatch (benchmarks/cpu_pin.py --compare avx2,portable shows both the bits and the cost).
PORTABLE_PINS = {**AVX2_PINS, "MKL_CBWR": "COMPATIBLE,STRICT"}
PINS = {"avx2": AVX2_PINS, "portable": PORTABLE_PINS}
# ATen's AVX2 kernels are built with FMA too (every AVX2 CPU has both).
AVX2_FLAGS = frozenset({"avx2", "fma"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    flags = cpuinfo_field("flags", cpuinfo)
    return None if flags is None else frozenset(flags.split())


def cpuinfo_field(name: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first `name : value` line's value in /proc/cpuinfo, or None where there is none."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(name):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's vendor_id (GenuineIntel, AuthenticAMD, ...), or None where it cannot be read."""
    return cpuinfo_field("vendor_id", cpuinfo)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    return cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine() or "unknown CPU"


def mode(environ) -> str | None:
    """The pin SAFEDRIFT_CPU_PIN asks for: "avx2" (the default), "portable" or None (off)."""
    value = environ.get(PIN_VAR, "").strip().lower()
    if value not in MODES:
        raise SafedriftError(f"{PIN_VAR}={environ[PIN_VAR]!r} is not a CPU pin: use avx2 (the default), "
                             "portable or off")
    return MODES[value]


def thread_cap(environ) -> int | None:
    """The most torch threads a job may use: 1 under portable (MKL's COMPATIBLE branch sums in another order
    with more threads, even STRICT), else None (no cap: the AVX2 pins are thread-count independent)."""
    return 1 if mode(environ) == "portable" else None


def pins(environ, machine: str | None = None, flags: frozenset[str] | None = None,
         vendor: str | None = None) -> tuple[dict[str, str], str]:
    """The variables to set on this machine, and why (one line, for logs, run cards and the README)."""
    chosen = mode(environ)
    if chosen is None:
        return {}, f"off ({PIN_VAR}=off): each library dispatches for this CPU"
    unsupported = why_unsupported(machine, flags)
    if unsupported:
        return {}, f"none ({unsupported})"
    why = " ".join(f"{k}={v}" for k, v in PINS[chosen].items())
    vendor = vendor or cpu_vendor()
    if chosen == "avx2" and vendor != "GenuineIntel":
        why += (f" (MKL's AVX2 branch is Intel-only: on this {vendor or 'unknown-vendor'} CPU MKL dispatches for "
                f"the CPU, so its GEMM bits differ from Intel CPUs'; {PIN_VAR}=portable uses MKL's cross-vendor branch)")
    return dict(PINS[chosen]), why


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
