"""Stage `risk.probe`: a linear (or MLP) probe for harmful intent on the reference model's
pre-generation activations, at every layer.

Data: harmful requests (pool `harmful`) vs benign requests (pool `benign_requests`, else `tasks`)
are split into train/validation. The layer is chosen on validation AUROC. Writes probe.json (the
chosen layer's probe: what adaptive_probe runs and probe_scores read) and probe_layers.json (every
layer's probe and AUROCs); stage `risk.probe_test` measures them on held-out eval sets, in a job
of its own, so that editing an eval set re-tests the probe but retrains nothing. Weights are saved
as JSON (never pickled).
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch

from safedrift.evaluate.generate import render_prompt
from safedrift.io import read_jsonl, write_json
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
    p.add_argument("--settings", required=True, help="risk.probe section as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="probe.json (the chosen layer's probe)")
    p.add_argument("--layers-out", required=True, help="probe_layers.json (every layer's probe and AUROCs)")
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
    feats = {k: features(model, tok, [r for r, _ in v], s["pooling"]) for k, v in splits.items()}
    labels = {k: np.array([y for _, y in v]) for k, v in splits.items()}
    table, probes = [], []
    for layer in range(feats["train"].shape[1]):
        probe = fit_head(feats["train"][:, layer], labels["train"], s["head"], s.get("C", 1.0), a.seed)
        row = {"layer": layer}
        for split in ("train", "validation"):
            row[f"auroc_{split}"] = auroc(labels[split], apply_head(probe, feats[split][:, layer]))
        table.append(row)
        probes.append(probe)
    best = max(table, key=lambda r: (r["auroc_validation"], -r["layer"]))["layer"]
    n = {k: len(v) for k, v in splits.items()}
    write_json(a.out, {"layer": best, "pooling": s["pooling"], "probe": probes[best], "n": n})  # table: in layers-out
    write_json(a.layers_out, {"layer": best, "pooling": s["pooling"], "probes": probes, "table": table, "n": n})
    print(json.dumps(table))


if __name__ == "__main__":
    main()
