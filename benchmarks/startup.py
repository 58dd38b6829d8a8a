"""Wall time of N jobs of two representative stages, in-process vs through the zygote fork server.

`world.pretrain` on a tiny corpus (3 optimizer steps) imports what a fine-tuning job imports
(torch, transformers, trl, datasets), so its time is mostly start-up and exit; `world.tokenizer`
does almost nothing, so its time through the server is the server's own cost per job (fork,
stdio hand-over, exit). Runs alternate between the modes so that load from other processes hits
both alike; each pair's outputs are compared byte for byte.

    python benchmarks/startup.py --n 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safedrift import zygote

ARCH = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}
SETTINGS = {"steps": 3, "batch_size": 4, "learning_rate": 1e-3, "warmup_ratio": 0.0, "max_length": 32, "seed": 0}


def job(argv: list, env: dict, zygote_dir: Path | None) -> float:
    """Seconds for one `python -m safedrift ...` job, as Snakemake would start it."""
    env = {**env, zygote.ENV_VAR: str(zygote_dir) if zygote_dir else "0"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "safedrift", *map(str, argv)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10, help="jobs per mode")
    a = p.parse_args(argv)
    env = {**os.environ, **{k: "1" for k in zygote.THREAD_ENV}}  # a `threads: 1` job
    with tempfile.TemporaryDirectory(prefix="safedrift-startup-") as tmp:
        work = Path(tmp)
        rng = random.Random(0)
        words = "the cat sat on a mat while a dog ran to the red box under the sun".split()
        (work / "corpus.jsonl").write_text("".join(
            json.dumps({"text": " ".join(rng.choice(words) for _ in range(30))}) + "\n" for _ in range(300)))
        stages = {
            "world.pretrain (3 steps)": lambda out: (
                ["world.pretrain", "--corpus", work / "corpus.jsonl", "--tokenizer", work / "tok", "--arch",
                 json.dumps(ARCH), "--settings", json.dumps(SETTINGS), "--out", out, "--threads", 1],
                out / "model.safetensors"),
            "world.tokenizer": lambda out: (
                ["world.tokenizer", "--corpus", work / "corpus.jsonl", "--vocab-size", 200, "--out", out],
                out / "tokenizer.json"),
        }
        job(stages["world.tokenizer"](work / "tok")[0], env, None)  # the tokenizer world.pretrain reads

        t0 = time.perf_counter()
        servers = zygote.Servers(work / "z", threads=[1], env=env)
        servers.wait_ready()
        server_start = time.perf_counter() - t0
        times = {(stage, mode): [] for stage in stages for mode in ("in-process", "zygote")}
        try:
            for i in range(a.n):
                for stage, make in stages.items():
                    outputs = []
                    for mode, folder in (("in-process", None), ("zygote", servers.folder)):
                        argv, output = make(work / f"{stage.split()[0]}-{mode}{i}")
                        times[stage, mode].append(job(argv, env, folder))
                        outputs.append(output.read_bytes())
                    if outputs[0] != outputs[1]:
                        sys.exit(f"{stage} run {i}: {output.name} differs between in-process and zygote")
        finally:
            servers.stop()
        served = (servers.folder / "threads1.log").read_text().count("forked ")

    print(f"{a.n} jobs per stage and mode, {os.cpu_count()} CPUs; outputs identical: yes")
    print(f"zygote server start (preload, once): {server_start:.1f} s; jobs it served: {served}/{a.n * len(stages)}")
    for stage in stages:
        print(stage)
        for mode in ("in-process", "zygote"):
            seconds = times[stage, mode]
            print(f"  {mode:10s}  total {sum(seconds):6.1f} s   per job {statistics.mean(seconds):5.2f} s"
                  f" (median {statistics.median(seconds):.2f}, min {min(seconds):.2f})")
        plain, forked = times[stage, "in-process"], times[stage, "zygote"]
        print(f"  in-process / zygote: {sum(plain) / sum(forked):.1f}x;"
              f" saved {statistics.mean(plain) - statistics.mean(forked):.2f} s per job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
