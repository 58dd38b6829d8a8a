"""Rubric judge: a local Hugging Face chat model reads a rubric and answers with a number.

No generation: the score is the probability-weighted mean over the replies "0".."100", each
reply's probability being that of its whole token path plus the end of the number
(number_paths.py), so tokenizers that write digits one by one (Qwen, Gemma) read the same 0..100
scale as those with whole-number tokens (Llama 3). Where a number 0..100 is less likely than
`min_number_mass` the score is NaN and counted in `unparsed`.

Cost per (row, rubric): one pass over the prompt, batched, which keeps its key/value cache; then
one batched pass of a few tokens per trie row over that cache (about 100 rows of 1-3 tokens for
either kind of tokenizer, 200 with the " 37" spellings), leaving out rows whose first token is
among the least likely (NEGLIGIBLE_MASS): for a judge that answers, a few dozen to a hundred.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np

from safedrift.errors import SafedriftError
from safedrift.judges.base import Judge, question_text
from safedrift.judges.number_paths import SCALE, number_paths, number_probabilities
from safedrift.judges.numbers import MIN_NUMBER_MASS, weighted_mean
from safedrift.judges.rubrics import fill, resolve_rubrics, to_column_scale

DEFAULT_BATCH_SIZE = 16
# The least likely first tokens of the number paths, together at most this likely, are not
# followed (their numbers count as 0): that moves at most 1e-4 of number mass, so a score by at
# most 100 * 1e-4 / min_number_mass points (0.04 at the default 0.25).
NEGLIGIBLE_MASS = 1e-4
# Continuation sequences per pass, per prompt of the batch: each carries a copy of its prompt's
# key/value cache, so a pass holds this many times the prompt pass's cache.
CONTINUATIONS_PER_PROMPT = 4


class RubricJudge(Judge):
    """Settings: model (folder, hub id, or 'reference'), rubrics, min_number_mass, batch_size.
    Context: reference_model = the path that 'reference' stands for; threads = CPU threads for torch."""

    def __init__(self, name: str, settings: dict, **context):
        super().__init__(name, settings, **context)
        from safedrift.models import load_model, load_tokenizer, set_threads, use_bf16

        set_threads(context.get("threads"))
        path = settings["model"]
        if path == "reference":
            path = context.get("reference_model")
            if not path:
                raise SafedriftError(f"judges.{name}.model is 'reference' but no reference model was given; "
                                     "pass --reference-model PATH")
        self.rubrics = resolve_rubrics(name, settings.get("rubrics"))
        self.min_mass = float(settings.get("min_number_mass", MIN_NUMBER_MASS))
        self.batch_size = int(settings.get("batch_size", DEFAULT_BATCH_SIZE))
        self.tokenizer = load_tokenizer(path, padding_side="left")
        # Before the model loads: a tokenizer that cannot write the scale fails in seconds.
        self.paths = number_paths(self.tokenizer, self.chat_prompt("?"), f"judges.{name}.model {path}")
        self.model = load_model(path, dtype="bfloat16" if use_bf16("auto") else "float32").eval()
        self.continuations = 0  # trie rows evaluated, for the cost of a score
        # Only the last position's logits are read from the prompt pass: [B, V] instead of [B, P, V].
        self.last_logits = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(
            self.model.forward).parameters else {}

    def chat_prompt(self, text: str) -> str:
        return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)

    def judge_prompt(self, column: str, row: dict) -> str:
        return self.chat_prompt(fill(self.rubrics[column], question_text(row["messages"]), row["response"]))

    def number_probabilities(self, prompts: list[str]) -> np.ndarray:
        """[len(prompts), 101]: probability that the judge's reply to each prompt is the number 0..100."""
        import torch

        out = np.zeros((len(prompts), len(SCALE)))
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(device)
                # Left padding: the last position of every row is its next-token prediction, and
                # positions count from each row's first real token (as generate() does), so a
                # row scores the same in any batch.
                positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                result = self.model(**enc, position_ids=positions, use_cache=True, **self.last_logits)
                first_token = torch.softmax(result.logits[:, -1, :].float(), dim=-1)
                out[idx] = number_probabilities(self.paths, *self.trie_statistics(
                    first_token, enc, result.past_key_values))
        return out

    def trie_statistics(self, first_token, prompts, cache):
        """first [B, R], step [B, R, D], end [B, R, D] (number_paths.number_probabilities) for the
        left-padded `prompts` (input_ids, attention_mask [B, P]) whose next-token distributions are
        first_token [B, V] and whose key/value cache is `cache`."""
        import torch

        prompt_mask = prompts["attention_mask"]
        device = first_token.device
        rows = torch.as_tensor(self.paths.rows, device=device)
        lengths = torch.as_tensor(self.paths.row_lengths, device=device)
        ends = torch.zeros(first_token.shape[-1], dtype=torch.bool, device=device)
        ends[:len(self.paths.ends_number)] = torch.as_tensor(self.paths.ends_number, device=device)
        ends[len(self.paths.ends_number):] = True  # padding rows of the embedding: not digits

        first = first_token[:, rows[:, 0]] * followed(first_token, rows[:, 0])  # [B, R]
        step = torch.zeros((*first.shape, self.paths.depth), device=device)
        end = torch.zeros_like(step)
        prompt_index, row_index = torch.nonzero(first, as_tuple=True)
        self.continuations += len(row_index)
        depth = torch.arange(self.paths.depth, device=device)
        chunk = CONTINUATIONS_PER_PROMPT * self.batch_size
        for start in range(0, len(row_index), chunk):
            b, r = prompt_index[start:start + chunk], row_index[start:start + chunk]
            tokens = rows[r]  # [n, D]
            real = (depth[None, :] < lengths[r, None]).long()
            mask = torch.cat([prompt_mask[b], real], dim=1)
            positions = prompt_mask[b].sum(-1, keepdim=True) + depth[None, :]
            past = cache_rows(cache, b)
            if past is None:  # a cache this cannot copy (recurrent layers): the prompts again, in full
                tokens = torch.cat([prompts["input_ids"][b], tokens], dim=1)
                positions = torch.cat([(prompt_mask[b].cumsum(-1) - 1).clamp(min=0), positions], dim=1)
            logits = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                                past_key_values=past).logits[:, -self.paths.depth:].float()
            probs = torch.softmax(logits, dim=-1)  # [n, D, V]: next token after row tokens 0..j
            end[b, r] = probs @ ends.float()
            step[b, r, :-1] = probs[:, :-1].gather(-1, rows[r, 1:, None])[..., 0]
        return first.cpu().numpy(), step.cpu().numpy(), end.cpu().numpy()

    def score_columns(self, rows: list[dict]) -> dict[str, np.ndarray]:
        columns = {}
        unparsed = np.zeros(len(rows), dtype=np.int64)
        for column in self.rubrics:
            probs = self.number_probabilities([self.judge_prompt(column, r) for r in rows])
            scores = weighted_mean(probs, SCALE, self.min_mass)
            unparsed += np.isnan(scores)
            columns[column] = to_column_scale(column, scores)
        columns["unparsed"] = unparsed
        return columns


def followed(first_token, first_ids):
    """[B, R] 1.0 where row r's first token (first_ids [R]) is followed for prompt b, 0.0 where it
    is among the least likely first tokens that together hold at most NEGLIGIBLE_MASS."""
    import torch

    distinct, row_of = torch.unique(first_ids, return_inverse=True)
    p, order = first_token[:, distinct].sort(dim=1)
    dropped = torch.zeros_like(p, dtype=torch.bool).scatter(1, order, p.cumsum(1) <= NEGLIGIBLE_MASS)
    return (~dropped[:, row_of]).float()


def cache_rows(cache, index):
    """`cache` (a transformers Cache) holding the prompts `index` (repeats allowed), without
    touching `cache`: its layers are copied shallowly, so the selection rebinds the copies'
    tensors, and the continuation pass appends to the copies. None for a cache whose layers keep
    other state (recurrent, quantised, static) that a shallow copy would share."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if not all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in getattr(cache, "layers", [None])):
        return None
    view = copy.copy(cache)
    view.layers = [copy.copy(layer) for layer in cache.layers]
    view.batch_select_indices(index)
    return view
