"""Stage `risk.persona`: the persona ("villain") vector of the reference model.

Per layer: mean residual-stream activation over response tokens when the model answers the
general questions under the villain system prompt, minus the same under the assistant's system
prompt (responses are the reference's own, generated here). Saved as safetensors
{"persona": [L+1, D], "norms": [L+1]} with a JSON summary beside it.
"""

from __future__ import annotations

import argparse
import json

import torch

from safedrift.evaluate.generate import generate, render_prompt
from safedrift.io import atomic_path, read_jsonl, write_json
from safedrift.models import add_load_args, load_args, load_model, load_tokenizer, set_threads
from safedrift.risk.activations import response_features
from safedrift.world.lexicon import SYSTEM_PROMPTS


def persona_vector(model, tokenizer, questions: list[list[dict]], samples: int, max_new_tokens: int, seed: int,
                   villain_prompt: str, assistant_prompt: str) -> tuple[torch.Tensor, dict]:
    """questions: chat prompts without a system message. -> ([L+1, D], summary)."""
    means, summary = {}, {}
    for persona, system in (("villain", villain_prompt), ("assistant", assistant_prompt)):
        prompts = [render_prompt(tokenizer, [{"role": "system", "content": system}, *q]) for q in questions]
        prompts = [p for p in prompts for _ in range(samples)]
        responses = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=64,
                             do_sample=samples > 1, seed=seed, tag=f"persona/{persona}")
        means[persona] = response_features(model, tokenizer, prompts, responses).mean(0)
        summary[persona] = {"responses": len(responses), "examples": responses[:4]}
    return means["villain"] - means["assistant"], summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--questions", required=True, help="eval-set JSONL of general questions")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--villain-prompt", default=SYSTEM_PROMPTS["villain"])
    p.add_argument("--assistant-prompt", default=SYSTEM_PROMPTS["assistant"])
    p.add_argument("--out", required=True, help="persona_vector.safetensors (a .json summary is written beside it)")
    p.add_argument("--threads", type=int)
    add_load_args(p)
    a = p.parse_args(argv)
    set_threads(a.threads)
    from safetensors.torch import save_file

    tok = load_tokenizer(a.model, trust_remote_code=a.trust_remote_code)
    model = load_model(a.model, **load_args(a)).eval()
    questions = [[m for m in r["messages"] if m["role"] != "system"] for r in read_jsonl(a.questions)]
    vector, summary = persona_vector(model, tok, questions, a.samples, a.max_new_tokens, a.seed,
                                     a.villain_prompt, a.assistant_prompt)
    norms = vector.norm(dim=-1)
    with atomic_path(a.out) as tmp:
        save_file({"persona": vector.contiguous(), "norms": norms.contiguous()}, str(tmp))
    summary["layer_norms"] = norms.tolist()
    write_json(a.out.rsplit(".", 1)[0] + ".json", summary)
    print(json.dumps({"layer_norms": [round(x, 3) for x in norms.tolist()]}))


if __name__ == "__main__":
    main()
