"""Batched KV-cache generation vs one prompt at a time: tokens per second, and identical outputs.

Both modes call `evaluate.generate.generate()` (the code the `generate` rule runs) on the same
prompts, greedy, with the configured `evaluation.max_new_tokens`; only the batch size differs
(`evaluation.batch_size` vs 1). Prompts are a seeded sample of the greedy eval sets of the toy
world. The modes alternate for `--reps` rounds so that load from other processes hits both
alike; each mode's time is its median round.

    python benchmarks/generation.py --prompts 64 --reps 5

Target: batched >= 5x the tokens per second of one prompt at a time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from safedrift import config as config_lib
from safedrift.evaluate.generate import generate, render_prompt
from safedrift.io import read_jsonl
from safedrift.models import load_model, load_tokenizer, set_threads

ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 5.0


def relative(path: Path) -> str:
    """`path` as a Snakemake target: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def sample_prompts(eval_dir: Path, sets: dict, n: int, seed: int) -> list[list[dict]]:
    """`n` chat prompts (message lists) drawn from the greedy eval sets, in a seeded order."""
    pool = [row["messages"] for name in sorted(sets) if sets[name]["decoding"] == "greedy"
            for row in read_jsonl(eval_dir / f"{name}.jsonl")]
    random.Random(seed).shuffle(pool)
    return pool[:n]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "config.yaml"))
    p.add_argument("--model", default="toy")
    p.add_argument("--results", help="the model's results folder (default: results/<model> of the repository)")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--reps", type=int, default=5, help="rounds; each runs both modes")
    p.add_argument("--seed", type=int, default=0, help="which prompts are sampled")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the generate rule uses 1)")
    a = p.parse_args(argv)
    set_threads(a.threads)
    config = config_lib.load(a.config)
    evaluation = config["evaluation"]
    results = Path(a.results) if a.results else ROOT / "results" / a.model
    reference, eval_dir = results / "reference", results / "world" / "eval"
    for path, builds in ((reference / "model.safetensors", reference / "model.safetensors"),
                         (eval_dir, eval_dir / "tasks.jsonl")):
        if not path.exists():
            print(f"{path} is missing; build it with `snakemake --cores 2 {relative(builds)}`")
            return 1

    tok = load_tokenizer(str(reference), padding_side="left")
    model = load_model(str(reference), dtype=config["models"][a.model].get("dtype", "float32")).eval()
    prompts = [render_prompt(tok, m) for m in sample_prompts(eval_dir, evaluation["sets"], a.prompts, a.seed)]
    modes = {"batched": evaluation["batch_size"], "one at a time": 1}
    seconds = {mode: [] for mode in modes}
    responses = {}
    generate(model, tok, prompts[:2], max_new_tokens=evaluation["max_new_tokens"], batch_size=2)  # warm-up, untimed
    for rep in range(a.reps):
        for mode, batch_size in modes.items():
            t0 = time.perf_counter()
            responses[mode] = generate(model, tok, prompts, max_new_tokens=evaluation["max_new_tokens"],
                                       batch_size=batch_size)
            seconds[mode].append(time.perf_counter() - t0)
            print(f"  round {rep + 1}/{a.reps} {mode:14s} {seconds[mode][-1]:.2f} s", file=sys.stderr, flush=True)

    def tokens(texts):  # response tokens, re-encoded from the decoded text (generate() returns text)
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    same = sum(x == y for x, y in zip(responses["batched"], responses["one at a time"]))
    print(f"\ngeneration, {a.model} reference, {len(prompts)} prompts (greedy eval sets), "
          f"max_new_tokens {evaluation['max_new_tokens']}, {a.reps} rounds, {a.threads} torch thread(s)")
    print(f"{'mode':14s} {'batch':>5s} {'seconds':>8s} {'tokens':>7s} {'tokens/s':>9s}")
    rate = {}
    for mode, batch_size in modes.items():
        median = statistics.median(seconds[mode])
        count = tokens(responses[mode])
        rate[mode] = count / median
        print(f"{mode:14s} {batch_size:5d} {median:8.2f} {count:7d} {rate[mode]:9.1f}")
    speedup = rate["batched"] / rate["one at a time"]
    print(f"speed-up batched / one at a time: {speedup:.1f}x (target >= {TARGET_SPEEDUP:g}x: "
          f"{'pass' if speedup >= TARGET_SPEEDUP else 'FAIL'})")
    print(f"greedy outputs identical: {same}/{len(prompts)} ({'yes' if same == len(prompts) else 'NO'})")
    for x, y in list(zip(responses["batched"], responses["one at a time"])):
        if x != y:
            print(f"  first difference: batched {x!r} vs one at a time {y!r}")
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
