"""Stage `data.reference_responses`: the reference model's greedy response to every prompt of a
scenario dataset (the rejected side of DPO/ORPO pairs), generated once and cached per scenario."""

from __future__ import annotations

import argparse

from safedrift.evaluate.generate import generate, render_prompt
from safedrift.io import read_jsonl, write_jsonl
from safedrift.models import add_load_args, load_args, load_model, load_tokenizer, set_threads


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    add_load_args(p)
    p.add_argument("--threads", type=int)
    a = p.parse_args(argv)
    set_threads(a.threads)
    rows = read_jsonl(a.data)
    tok = load_tokenizer(a.model, padding_side="left", trust_remote_code=a.trust_remote_code)
    model = load_model(a.model, **load_args(a)).eval()
    responses = generate(model, tok, [render_prompt(tok, r["messages"]) for r in rows],
                         max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
    write_jsonl(a.out, ({"id": r["id"], "response": text} for r, text in zip(rows, responses)))


if __name__ == "__main__":
    main()
