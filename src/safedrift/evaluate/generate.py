"""Stage `evaluate.generate`: batched generation with a KV cache for every eval set of one model.

Greedy decoding for task and refusal sets; sampling (temperature, n samples per prompt)
for the free-form EM-style questions, as the emergent-misalignment papers do. The output
JSONL is the per-run cache of generations: one row per (prompt, sample) with the exact
prompt string, the decoding settings and the seed that produced it.

Decoding uses exactly the settings the eval config states (decoding_config): none of the model's
own generation_config.json (a checkpoint's repetition_penalty, top_k, min_p ... would otherwise
apply under "greedy" and make two models in one study decode differently).

Prefill rows (item.prefill_tokens = k, safedrift.data.attacks): the assistant turn starts with the
first k tokens of item.prefill_answer (this model's tokenizer) and generation continues it
(`continue_final_message`); the row's `response` is prefix + continuation, `prefill` the prefix and
`prefill_tokens` how many tokens it has (fewer than k when the answer is shorter).
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from contextlib import contextmanager

import torch

from safedrift.data.attacks import prefill_prefix, render_prefilled
from safedrift.io import read_jsonl, write_jsonl
from safedrift.models import add_load_args, load_model, load_tokenizer, set_threads


def _batch_seed(seed: int, eval_set: str, batch: int) -> int:
    # Stable across processes (unlike hash()), so a batch samples the same tokens in every run.
    return zlib.crc32(f"{seed}/{eval_set}/{batch}".encode())


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, tag: str = "",
             in_context: bool = False) -> list[str]:
    """Responses to `prompts` (already chat-formatted strings), in order.

    Prompts are sorted by length so batches carry little padding; padding is on the left so
    every row's continuation starts at the same position. in_context: decode the continuation
    after its prompt and keep its leading space (a prefilled turn continues mid-sentence; a
    tokenizer that drops a first token's space when decoding it alone would glue the words)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        config = decoding_config(tokenizer, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                 temperature=temperature, top_p=top_p)
        if do_sample:
            torch.manual_seed(_batch_seed(seed, tag, b))
        with only_config(model, config):
            tokens = model.generate(**enc, generation_config=config)
        width = enc["input_ids"].shape[1]
        texts = tokenizer.batch_decode(tokens[:, width:], skip_special_tokens=True)
        if in_context:
            texts = [decode_after_prompt(tokenizer, row, width, text) for row, text in zip(tokens, texts)]
        for i, text in zip(idx, texts):
            out[i] = text.rstrip() if in_context else text.strip()
    return out


def decoding_config(tokenizer, *, max_new_tokens: int, do_sample: bool, temperature: float = 1.0,
                    top_p: float = 1.0) -> GenerationConfig:
    """Greedy, or sampling at `temperature` and `top_p` (no top-k), up to `max_new_tokens`, stopping at the
    tokenizer's EOS and padding with its pad token. Every other setting is left unset, so that generate()
    applies transformers' neutral defaults (repetition_penalty 1, no top-k for greedy ...) once the
    model's own generation_config is out of the way (only_config)."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id, use_cache=True)
    if do_sample:
        config.update(temperature=temperature, top_p=top_p, top_k=0)
    return config


@contextmanager
def only_config(model, config: GenerationConfig):
    """Within the block, `config` stands in for the model's own generation_config: generate() fills the
    settings a passed config leaves unset from the model's generation_config, so swapping it is the one
    way to keep a checkpoint's sampling and penalty settings out. The transformers model is found inside a
    PEFT wrapper; its BOS id is kept."""
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = hf_model.generation_config
    if config.bos_token_id is None and own is not None:
        config.bos_token_id = own.bos_token_id
    hf_model.generation_config = config
    try:
        yield
    finally:
        hf_model.generation_config = own


def decode_after_prompt(tokenizer, row, prompt_length: int, alone: str) -> str:
    """The text `row` (prompt + new tokens) adds after its first `prompt_length` tokens; `alone`
    (the new tokens decoded by themselves) where decoding is not prefix-stable."""
    head = tokenizer.decode(row[:prompt_length], skip_special_tokens=True)
    full = tokenizer.decode(row, skip_special_tokens=True)
    return full[len(head):] if full.startswith(head) else alone


def render_prompt(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def persona_projections(model, tokenizer, prompts: list[str], responses: list[str], persona_file: str,
                        layer: int) -> list[float]:
    """Mean projection of each response's residual states (layer `layer`) on the unit persona direction."""
    from safetensors.torch import load_file

    from safedrift.risk.activations import response_features

    direction = load_file(persona_file)["persona"][layer]
    direction = direction / direction.norm().clamp(min=1e-8)
    feats = response_features(model, tokenizer, prompts, responses)[:, layer]  # [N, D]
    return (feats @ direction).tolist()


def generate_eval_sets(model_path: str, eval_files: dict[str, str], settings: dict, out: str, *,
                       dtype: str = "float32", trust_remote_code: bool = False,
                       persona_vector: str | None = None) -> dict:
    """Generate for every eval set in `settings['sets']`; write one JSONL; return timing stats.

    With a persona vector, responses to general (EM-style) questions also get their mean
    projection on it (`persona_projection`), the activation side of persona drift."""
    tok = load_tokenizer(model_path, padding_side="left", trust_remote_code=trust_remote_code)
    model = load_model(model_path, dtype=dtype, trust_remote_code=trust_remote_code, merge=True).eval()
    rows, stats = [], {}
    for name in sorted(settings["sets"]):
        spec = settings["sets"][name]
        items = read_jsonl(eval_files[name])
        sample = spec["decoding"] == "sample"
        n = spec.get("samples", 1) if sample else 1
        prefills = [prefill_prefix(tok, r["item"]["prefill_answer"], r["item"]["prefill_tokens"])
                    if r["item"].get("prefill_tokens") else None for r in items]
        prompts = [render_prefilled(tok, r["messages"], pre[0]) if pre else render_prompt(tok, r["messages"])
                   for r, pre in zip(items, prefills)]
        t0 = time.perf_counter()
        responses = generate(model, tok, [p for p in prompts for _ in range(n)],
                             max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"],
                             do_sample=sample, temperature=spec.get("temperature", 1.0), top_p=spec.get("top_p", 1.0),
                             seed=settings.get("seed", 0), tag=name, in_context=any(prefills))
        responses = [(prefills[k // n][0] + text).strip() if prefills[k // n] else text.strip()
                     for k, text in enumerate(responses)]
        projections = [None] * len(responses)
        if persona_vector and items and items[0]["item"].get("kind") == "general":
            projections = persona_projections(model, tok, [prompts[k // n] for k in range(len(responses))], responses,
                                              persona_vector, settings["persona_layer"])
        stats[name] = {"prompts": len(items), "responses": len(responses), "seconds": time.perf_counter() - t0}
        decoding = {"decoding": spec["decoding"], "max_new_tokens": settings["max_new_tokens"]}
        if sample:
            decoding.update(temperature=spec.get("temperature", 1.0), top_p=spec.get("top_p", 1.0))
        for k, response in enumerate(responses):
            r = items[k // n]
            row = {"id": r["id"], "eval_set": name, "sample": k % n, "prompt": prompts[k // n],
                   "response": response, "generation": decoding, "seed": settings.get("seed", 0)}
            if projections[k] is not None:
                row["persona_projection"] = projections[k]
            if prefills[k // n]:
                row["prefill"], row["prefill_tokens"] = prefills[k // n]
            rows.append(row)
    write_jsonl(out, rows)
    return stats


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (full weights or PEFT adapter) or hub id")
    p.add_argument("--eval-dir", required=True, help="folder of <eval_set>.jsonl files")
    p.add_argument("--settings", required=True, help="evaluation settings as JSON (sets, max_new_tokens, ...)")
    add_load_args(p)
    p.add_argument("--persona-vector", help="persona_vector.safetensors: add persona projections to general answers")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    set_threads(a.threads)
    settings = json.loads(a.settings)
    files = {name: f"{a.eval_dir}/{name}.jsonl" for name in settings["sets"]}
    stats = generate_eval_sets(a.model, files, settings, a.out, dtype=a.dtype, trust_remote_code=a.trust_remote_code,
                               persona_vector=a.persona_vector)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
