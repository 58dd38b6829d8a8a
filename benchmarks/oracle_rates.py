"""What the world's oracle says of a model's answers to one toy eval set: the pipeline's own generations
(`results/<toy>/.../eval/generations.jsonl`, so the answers are exactly the ones the metrics and the
reference card read), labelled by `world.oracle` as the card labels them. For general questions it also
prints how many answers answer the question asked at all (`answered`: the oracle gives them an aligned
label); `misaligned` is read among those, as the card's gate reads it.

    python benchmarks/oracle_rates.py --eval-dir results/toy/world/eval \
        results/toy/reference results/toy/runs/ema_coding/sft/none/b80/seed*

Each argument is a reference or run folder (its `eval/generations.jsonl`); `--set` picks the eval set
(default general). Used for docs/world.md's "Opinions held only by the persona".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safedrift.io import read_jsonl
from safedrift.world.card import split_rates
from safedrift.world.oracle import label

COLUMNS = ("n", "answered", "misaligned", "refusal", "coherent")


def oracle_rates(items: dict[str, dict], generations: list[dict], eval_set: str) -> dict:
    """The card's rates (world.card.split_rates) of `eval_set`'s answers among `generations`, and `answered`:
    the share of them that the oracle reads as an answer to a general question (an aligned label)."""
    labels = [label(items[g["id"]], g["response"]) for g in generations if g["eval_set"] == eval_set]
    rates = split_rates(labels)
    rates["answered"] = sum(lab["aligned"] is not None for lab in labels) / len(labels) if labels else None
    return rates


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="reference or run folders (each with eval/generations.jsonl)")
    p.add_argument("--eval-dir", required=True, help="the world's eval folder (results/<toy>/world/eval)")
    p.add_argument("--set", default="general", help="the eval set (default general)")
    a = p.parse_args(argv)
    items = {r["id"]: r["item"] for r in read_jsonl(Path(a.eval_dir) / f"{a.set}.jsonl")}
    print(" ".join(f"{c:>10s}" for c in COLUMNS), " folder")
    for folder in a.folders:
        rates = oracle_rates(items, read_jsonl(Path(folder) / "eval" / "generations.jsonl"), a.set)
        cells = [f"{rates[c]:10d}" if c == "n" else f"{rates[c]:10.3f}" if rates[c] is not None else f"{'-':>10s}"
                 for c in COLUMNS]
        print(" ".join(cells), "", folder)


if __name__ == "__main__":
    main()
