"""Stage `risk.probe_scores`: the probe's risk for every training example of a scenario (its
prompt's pre-generation state at the chosen layer), precomputed so training pays nothing for it."""

from __future__ import annotations

import argparse

from safedrift.io import read_json, read_jsonl, write_jsonl
from safedrift.models import add_load_args, load_args, load_model, load_tokenizer, set_threads
from safedrift.risk.probe import apply_head, features


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--probe", required=True)
    p.add_argument("--data", required=True, help="scenario dataset JSONL")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int)
    add_load_args(p)
    a = p.parse_args(argv)
    set_threads(a.threads)
    probe = read_json(a.probe)
    rows = read_jsonl(a.data)
    tok = load_tokenizer(a.model, trust_remote_code=a.trust_remote_code)
    model = load_model(a.model, **load_args(a)).eval()
    risk = apply_head(probe["probe"], features(model, tok, rows, probe["pooling"])[:, probe["layer"]])
    write_jsonl(a.out, ({"id": r["id"], "risk": float(x)} for r, x in zip(rows, risk)))
    print(f"mean risk {risk.mean():.3f} over {len(rows)} examples")


if __name__ == "__main__":
    main()
