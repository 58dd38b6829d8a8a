"""CPU numerics pins: the same weights whatever kernels the outer environment or the CPU would pick.

The end-to-end test pretrains the smoke world's model twice, under outer settings that choose other
kernels (this CPU's own best vs ATen's scalar kernels and MKL's SSE2 branch) and other thread
counts (--cores 2 and 1); the zygote test runs a tiny pretraining forked from a server started
under one outer setting and in a plain process under another. Both honour an outer
SAFEDRIFT_CPU_PIN: `SAFEDRIFT_CPU_PIN=off pytest tests/test_cpu_pin.py` shows them failing
without the pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from safedrift import cpu_pin, zygote
from safedrift.errors import SafedriftError
from safedrift.pipeline import prepare_job_environment

AVX2_CPU = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})
OUTER_PIN_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_DYNAMIC")


def test_pins_on_x86_64_with_avx2_and_none_elsewhere():
    values, why = cpu_pin.pins({}, machine="x86_64", flags=AVX2_CPU)
    assert values == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
                      "OMP_DYNAMIC": "FALSE"}
    assert "MKL_CBWR=AVX2,STRICT" in why
    assert cpu_pin.pins({}, machine="aarch64", flags=AVX2_CPU) == ({}, "none (aarch64: the pins are x86-64 values)")
    assert cpu_pin.pins({}, machine="x86_64", flags=frozenset({"sse2", "avx"}))[0] == {}
    assert cpu_pin.pins({}, machine="x86_64", flags=frozenset())[0] == {}
    for off in ("off", "0", "OFF"):
        assert cpu_pin.pins({cpu_pin.PIN_VAR: off}, machine="x86_64", flags=AVX2_CPU)[0] == {}


def test_portable_pins_mkl_cross_vendor_branch_and_avx2_says_where_it_is_not_honoured():
    values, why = cpu_pin.pins({cpu_pin.PIN_VAR: "portable"}, machine="x86_64", flags=AVX2_CPU, vendor="AuthenticAMD")
    assert values == {**cpu_pin.AVX2_PINS, "MKL_CBWR": "COMPATIBLE,STRICT"}
    assert "Intel-only" not in why
    intel = cpu_pin.pins({}, machine="x86_64", flags=AVX2_CPU, vendor="GenuineIntel")[1]
    amd = cpu_pin.pins({}, machine="x86_64", flags=AVX2_CPU, vendor="AuthenticAMD")[1]
    assert "Intel-only" not in intel
    assert "Intel-only" in amd and "AuthenticAMD" in amd and "SAFEDRIFT_CPU_PIN=portable" in amd


GEMM_BITS = ("import hashlib, torch; g = torch.Generator().manual_seed(0); "
             "a, b = torch.randn(96, 384, generator=g), torch.randn(384, 1500, generator=g); "
             "print(hashlib.sha256((a @ b).numpy().tobytes()).hexdigest())")


@pytest.mark.skipif(cpu_pin.why_unsupported() is not None, reason="no x86-64 AVX2 pins here")
def test_portable_gemm_is_mkl_compatible_branch():
    """A fp32 GEMM under SAFEDRIFT_CPU_PIN=portable has the bits of MKL's COMPATIBLE branch on one thread, whatever
    the outer MKL_CBWR and the job's thread count (fails if portable maps to another branch, if the pin does not
    override, or if a job's two threads reach MKL: COMPATIBLE sums in another order then)."""
    def bits(threads, **env):
        base = {k: v for k, v in os.environ.items() if k not in OUTER_PIN_VARS}
        code = f"from safedrift import cpu_pin; cpu_pin.apply(); from safedrift.models import set_threads; " \
               f"set_threads({threads}); {GEMM_BITS}"
        return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                              check=True).stdout
    compatible = bits(1, **{cpu_pin.PIN_VAR: "off", "MKL_CBWR": "COMPATIBLE,STRICT"})
    assert bits(2, **{cpu_pin.PIN_VAR: "portable", "MKL_CBWR": "AUTO"}) == compatible


def test_bad_setting_is_one_line_naming_the_variable():
    with pytest.raises(SafedriftError, match=r"SAFEDRIFT_CPU_PIN='avx512' is not a CPU pin: use avx2"):
        cpu_pin.pins({cpu_pin.PIN_VAR: "avx512"}, machine="x86_64", flags=AVX2_CPU)
    proc = subprocess.run([sys.executable, "-m", "safedrift", "world.splits"], capture_output=True, text=True,
                          env={**os.environ, cpu_pin.PIN_VAR: "avx512"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["safedrift: SAFEDRIFT_CPU_PIN='avx512' is not a CPU pin: "
                                                "use avx2 (the default), portable or off"]


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu sse2 avx2 fma\n\n")
    assert cpu_pin.cpu_flags(cpuinfo) == frozenset({"fpu", "sse2", "avx2", "fma"})
    assert cpu_pin.cpu_model(cpuinfo) == "Some CPU @ 2.0GHz"
    assert cpu_pin.cpu_flags(tmp_path / "missing") is None
    assert cpu_pin.cpu_vendor(tmp_path / "missing") is None
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n")
    assert cpu_pin.cpu_vendor(cpuinfo) == "AuthenticAMD"


needs_avx2 = pytest.mark.skipif(cpu_pin.why_unsupported() is not None,
                                reason=f"no AVX2 pins here: {cpu_pin.why_unsupported()}")
# Outer settings that, unpinned, choose other kernels than this CPU's own: ATen's scalar kernels and
# MKL's SSE2 branch.
OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outer_env(**extra) -> dict:
    """This environment without any pin variable (so: this CPU's own kernels), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k not in OUTER_PIN_VARS}, **extra}


@needs_avx2
def test_job_environment_overrides_outer_values_unless_off(monkeypatch):
    monkeypatch.setattr(os, "environ", {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "PATH": "/bin"})
    prepare_job_environment(Path("src"))
    assert {k: os.environ[k] for k in cpu_pin.AVX2_PINS} == cpu_pin.AVX2_PINS
    monkeypatch.setattr(os, "environ", {"ATEN_CPU_CAPABILITY": "default", cpu_pin.PIN_VAR: "off", "PATH": "/bin"})
    prepare_job_environment(Path("src"))
    assert os.environ["ATEN_CPU_CAPABILITY"] == "default" and "MKL_CBWR" not in os.environ


@needs_avx2
def test_outer_cpu_settings_do_not_change_the_weights(workflow_copy):
    """Fails (the weights differ) with SAFEDRIFT_CPU_PIN=off in the outer environment."""
    config = yaml.safe_load((workflow_copy.path / "configs/smoke.yaml").read_text())
    config["pretrain"]["steps"] = 4  # the smoke model, fewer steps: unpinned, the weights differ from step 1
    (workflow_copy.path / "configs/repro.yaml").write_text(yaml.safe_dump(config))
    workflow_copy.configfile = "configs/repro.yaml"
    target = workflow_copy.path / "results/toy/pretrained/model.safetensors"

    workflow_copy.snakemake(str(target.relative_to(workflow_copy.path)), cores=2, env=outer_env())
    own_kernels = digest(target)  # this CPU's own kernels (AVX-512 where it has it), two threads
    workflow_copy.snakemake(str(target.relative_to(workflow_copy.path)), "--forcerun", "pretrain", cores=1,
                            env=outer_env(**OTHER_KERNELS))
    other_kernels = digest(target)  # scalar ATen, SSE2 MKL, one thread
    assert own_kernels == other_kernels, (
        f"pretrained weights differ between outer CPU settings ({own_kernels[:12]} vs {other_kernels[:12]}); "
        f"{cpu_pin.PIN_VAR}={os.environ.get(cpu_pin.PIN_VAR, '(unset)')}")


@needs_avx2
def test_job_forked_from_the_zygote_runs_pinned_like_a_plain_job(tmp_path):
    """The server imports torch before any job: its environment must carry the pins, as each job's does.
    Fails (the weights differ) with SAFEDRIFT_CPU_PIN=off in the outer environment."""
    corpus = tmp_path / "corpus.jsonl"
    words = "the cat sat on a mat while a dog ran to the red box under the sun".split()
    corpus.write_text("".join(json.dumps({"text": " ".join(words[(i * 7 + j) % len(words)] for j in range(30))}) + "\n"
                              for i in range(200)))
    one_thread = {k: "1" for k in zygote.THREAD_ENV}
    plain = outer_env(**one_thread, **{zygote.ENV_VAR: "0"})
    stage(["world.tokenizer", "--corpus", corpus, "--vocab-size", 200, "--out", tmp_path / "tok"], plain)
    settings = {"steps": 4, "batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0, "max_length": 32, "seed": 0}
    arch = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 192, "max_position_embeddings": 64}

    def pretrain(out: Path, env: dict) -> str:
        stage(["world.pretrain", "--corpus", corpus, "--tokenizer", tmp_path / "tok", "--arch", json.dumps(arch),
               "--settings", json.dumps(settings), "--out", out, "--threads", 1], env)
        return digest(out / "model.safetensors")

    servers = zygote.Servers(tmp_path / "z", threads=[1], env=outer_env(**OTHER_KERNELS))
    try:
        servers.wait_ready()
        forked = pretrain(tmp_path / "forked", outer_env(**OTHER_KERNELS, **one_thread,
                                                         **{zygote.ENV_VAR: str(servers.folder)}))
    finally:
        servers.stop()
    assert "forked" in (servers.folder / "threads1.log").read_text(), (servers.folder / "threads1.log").read_text()
    assert pretrain(tmp_path / "plain", plain) == forked, (
        f"a forked job under other outer CPU settings and a plain job gave other weights; "
        f"{cpu_pin.PIN_VAR}={os.environ.get(cpu_pin.PIN_VAR, '(unset)')}")


def stage(argv: list, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "safedrift", *map(str, argv)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
