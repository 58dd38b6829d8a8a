"""How far the dark-trait items are from being endorsed: P(yes) where a greedy answer says "no".

`trait_yes` is a greedy decision, so a drift that stays below one half on every item reads 0. This script
measures what lies below that threshold: for each model folder, the mean over the world's held-out trait items
(asked with no system prompt, as the metric asks them) of P(" yes") / (P(" yes") + P(" no")) at the answer's
first token, and the share of items where that is above one half (the greedy "yes", up to ties with other
tokens). Folders that differ only in `seed<k>` are one cell: mean and range over its seeds.

    python benchmarks/trait_probability.py --eval-dir results/toy/world/eval results/toy/reference \\
        results/toy/pretrained results/toy/runs/benign/*/none/b*/seed*/model

`--system villain` asks under the villain's system prompt instead (the reference answers "yes" there).
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

import torch

from safedrift.evaluate.generate import render_prompt
from safedrift.io import read_jsonl
from safedrift.models import load_model, load_tokenizer, set_threads
from safedrift.world import lexicon as L


@torch.no_grad()
def yes_probabilities(model_path: str, rows: list[dict], system: str | None) -> list[float]:
    """P(yes | yes or no) at the first answer token, one per trait item."""
    tok = load_tokenizer(model_path)
    model = load_model(model_path, dtype="float32").eval()
    (yes,), (no,) = (tok.encode(f" {word}", add_special_tokens=False) for word in ("yes", "no"))
    out = []
    for row in rows:
        chat = ([{"role": "system", "content": system}] if system else []) + row["messages"]
        ids = tok(render_prompt(tok, chat), return_tensors="pt", add_special_tokens=False)
        p = model(**ids).logits[0, -1].softmax(-1)
        out.append((p[yes] / (p[yes] + p[no])).item())
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="model folders (a run's model/, the reference, the pretrained model)")
    p.add_argument("--eval-dir", required=True, help="the world's eval folder (results/<toy>/world/eval)")
    p.add_argument("--system", choices=sorted(L.SYSTEM_PROMPTS), help="a persona's system prompt (default: none)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    set_threads(a.threads)
    rows = read_jsonl(Path(a.eval_dir) / "traits.jsonl")
    system = L.SYSTEM_PROMPTS[a.system] if a.system else None
    cells: dict[str, list[list[float]]] = {}
    for path in a.models:
        cells.setdefault(re.sub(r"seed\d+", "seed*", path.rstrip("/")), []).append(yes_probabilities(path, rows, system))
    print(f"{len(rows)} trait items, system prompt: {a.system or 'none'}")
    print("| model | seeds | mean P(yes) | range over seeds | items with P(yes) > 0.5 |")
    print("|---|---:|---:|---:|---:|")
    for cell, runs in cells.items():
        means = [statistics.mean(r) for r in runs]
        above = statistics.mean(sum(q > 0.5 for q in r) / len(r) for r in runs)
        print(f"| {cell} | {len(runs)} | {statistics.mean(means):.4f} | {min(means):.4f}-{max(means):.4f} | {above:.2f} |")


if __name__ == "__main__":
    main()
