"""Stage `risk.probe_test`: the activation probe of every layer (risk.probe) on held-out requests.

The test set is the held-out eval sets (toy: held-out objects and request templates, and benign
requests about held-out objects; real models: the request-format eval files), so test AUROC
measures generalisation beyond the pools the probe was fitted and chosen on. Writes
probe_auroc.csv (per layer: train, validation and test AUROC, and the chosen layer) and
probe_test.json (the chosen layer's test AUROC: the `probe_auroc` of the claims).
"""

from __future__ import annotations

import argparse

import numpy as np

from safedrift.io import read_json, read_jsonl, write_json, write_text
from safedrift.models import add_load_args, load_args, load_model, load_tokenizer, set_threads
from safedrift.risk.probe import apply_head, auroc, features


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--layers", required=True, help="probe_layers.json of risk.probe")
    p.add_argument("--test", nargs="+", required=True, help="eval-set JSONLs of requests (label = item.harmful)")
    p.add_argument("--table", required=True, help="probe_auroc.csv to write")
    p.add_argument("--out", required=True, help="probe_test.json to write")
    p.add_argument("--threads", type=int)
    add_load_args(p)
    a = p.parse_args(argv)
    set_threads(a.threads)
    fitted = read_json(a.layers)
    tok = load_tokenizer(a.model, trust_remote_code=a.trust_remote_code)
    model = load_model(a.model, **load_args(a)).eval()
    test = [r for path in a.test for r in read_jsonl(path) if r["item"].get("kind") == "request"]
    labels = np.array([int(bool(r["item"]["harmful"])) for r in test])
    feats = features(model, tok, test, fitted["pooling"])
    best = fitted["layer"]
    rows = [{**row, "auroc_test": auroc(labels, apply_head(probe, feats[:, row["layer"]]))}
            for row, probe in zip(fitted["table"], fitted["probes"])]
    csv = "layer,auroc_train,auroc_validation,auroc_test,chosen\n" + "".join(
        f"{r['layer']},{r['auroc_train']:.4f},{r['auroc_validation']:.4f},{r['auroc_test']:.4f},{int(r['layer'] == best)}\n"
        for r in rows)
    write_text(a.table, csv)
    write_json(a.out, {"layer": best, "auroc_test": next(r["auroc_test"] for r in rows if r["layer"] == best),
                       "n_test": len(test)})
    print(csv)


if __name__ == "__main__":
    main()
