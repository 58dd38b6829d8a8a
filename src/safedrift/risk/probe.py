"""Stage `risk.probe`: a linear (or MLP) probe for harmful intent on the reference model's
pre-generation activations, at every layer.

Data: harmful requests (pool `harmful`) vs benign requests (pool `benign_requests`, else `tasks`)
are split into train/validation; the test set is the held-out eval sets (held-out objects and
request templates, and benign requests about held-out objects), so test AUROC measures
generalisation. The layer is chosen on validation AUROC. Weights are saved as JSON (never pickled).
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch

from safedrift.evaluate.generate import render_prompt
from safedrift.io import read_jsonl, write_json, write_text
from safedrift.models import add_load_args, load_args, load_model, load_tokenizer, set_threads
from safedrift.risk.activations import prompt_features


def fit_head(x: np.ndarray, y: np.ndarray, head: str, C: float, seed: int) -> dict:
    """A probe as plain arrays: standardisation, then logistic regression or a one-hidden-layer MLP."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    if head == "logistic":
        clf = LogisticRegression(C=C, max_iter=2000).fit(z, y)
        layers = [{"weight": clf.coef_.T.tolist(), "bias": clf.intercept_.tolist()}]
    elif head == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1.0 / C, max_iter=500, random_state=seed).fit(z, y)
        layers = [{"weight": w.tolist(), "bias": b.tolist()} for w, b in zip(clf.coefs_, clf.intercepts_)]
    else:
        raise ValueError(f"probe head must be 'logistic' or 'mlp', got {head!r}")
    return {"head": head, "mean": mean.tolist(), "std": std.tolist(), "layers": layers}


def apply_head(probe: dict, x: np.ndarray) -> np.ndarray:
    """P(harmful) for features x [N, D]."""
    h = (x - np.asarray(probe["mean"])) / np.asarray(probe["std"])
    for i, layer in enumerate(probe["layers"]):
        h = h @ np.asarray(layer["weight"]) + np.asarray(layer["bias"])
        if i < len(probe["layers"]) - 1:
            h = np.maximum(h, 0)
    return 1 / (1 + np.exp(-h[:, 0]))


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if len(set(y.tolist())) == 2 else float("nan")


def features(model, tok, rows, pooling):
    return prompt_features(model, tok, [render_prompt(tok, r["messages"]) for r in rows], pooling).numpy()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--harmful", required=True, help="pool JSONL of harmful requests (label 1)")
    p.add_argument("--benign", nargs="+", required=True,
                   help="pool JSONLs of benign prompts (label 0): requests, and tasks so that any benign question,"
                        " not only a benign request, reads as safe")
    p.add_argument("--test", nargs="+", required=True, help="eval-set JSONLs of requests (label = item.harmful)")
    p.add_argument("--settings", required=True, help="risk.probe section as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="probe.json; probe_auroc.csv is written beside it")
    p.add_argument("--threads", type=int)
    add_load_args(p)
    a = p.parse_args(argv)
    set_threads(a.threads)
    s = json.loads(a.settings)
    torch.manual_seed(a.seed)
    tok = load_tokenizer(a.model, trust_remote_code=a.trust_remote_code)
    model = load_model(a.model, **load_args(a)).eval()
    rows = [(r, 1) for r in read_jsonl(a.harmful)] + [(r, 0) for path in a.benign for r in read_jsonl(path)]
    random.Random(a.seed).shuffle(rows)
    n_val = int(len(rows) * s.get("validation_fraction", 0.25))
    splits = {"train": rows[n_val:], "validation": rows[:n_val]}
    test = [r for path in a.test for r in read_jsonl(path) if r["item"].get("kind") == "request"]
    splits["test"] = [(r, int(bool(r["item"]["harmful"]))) for r in test]
    feats = {k: features(model, tok, [r for r, _ in v], s["pooling"]) for k, v in splits.items()}
    labels = {k: np.array([y for _, y in v]) for k, v in splits.items()}
    table, probes = [], []
    for layer in range(feats["train"].shape[1]):
        probe = fit_head(feats["train"][:, layer], labels["train"], s["head"], s.get("C", 1.0), a.seed)
        row = {"layer": layer}
        for split in ("train", "validation", "test"):
            row[f"auroc_{split}"] = auroc(labels[split], apply_head(probe, feats[split][:, layer]))
        table.append(row)
        probes.append(probe)
    best = max(table, key=lambda r: (r["auroc_validation"], -r["layer"]))["layer"]
    write_json(a.out, {"layer": best, "pooling": s["pooling"], "probe": probes[best], "table": table,
                       "n": {k: len(v) for k, v in splits.items()}})
    csv = "layer,auroc_train,auroc_validation,auroc_test,chosen\n" + "".join(
        f"{r['layer']},{r['auroc_train']:.4f},{r['auroc_validation']:.4f},{r['auroc_test']:.4f},{int(r['layer'] == best)}\n"
        for r in table)
    write_text(a.out.rsplit(".", 1)[0] + "_auroc.csv", csv)
    print(csv)


if __name__ == "__main__":
    main()
