"""Rubric judge: a local Hugging Face chat model reads a rubric and answers with a number.

No generation: the score is the probability-weighted mean over the replies "0".."100", each
reply's probability being that of its whole token path plus the end of the number
(number_paths.py), so tokenizers that write digits one by one (Qwen, Gemma) read the same 0..100
scale as those with whole-number tokens (Llama 3). Where a number 0..100 is less likely than
`min_number_mass` the score is NaN and counted in `unparsed`.

Cost per batch of `batch_size` (row, rubric) prompts: one pass over the prompts, which keeps
their key/value cache, then one pass over the ~200 nodes of the number trie after each of them
(number_passes.py; models with sliding-window or recurrent layers run the trie's rows instead).
"""

from __future__ import annotations

import inspect

import numpy as np

from safedrift.judges.base import LocalModelJudge, local_model_schema, question_text
from safedrift.judges.local_model import model_path
from safedrift.judges.number_paths import SCALE, number_paths, number_probabilities
from safedrift.judges.numbers import MIN_NUMBER_MASS, weighted_mean
from safedrift.judges.rubric_prompts import fill, resolve_rubrics, rubric_columns, to_column_scale

DEFAULT_BATCH_SIZE = 16


class RubricJudge(LocalModelJudge):
    """Settings: model (folder, hub id, or 'reference'), rubrics (rubric_prompts.py), min_number_mass,
    batch_size, dtype (default: bfloat16 on a CUDA device that supports it, else float32), trust_remote_code.
    Context: reference_model = the path that 'reference' stands for; threads = CPU threads for torch."""

    @classmethod
    def scored(cls, name, settings):
        return rubric_columns(name, settings.get("rubrics"))

    schema = local_model_schema("rubric", "folder or hub id of a chat model, or 'reference' for the run's reference "
                                "model", {
        "rubrics": {"type": "object", "additionalProperties": {"type": "string"}},
        "min_number_mass": {"$ref": "#/$defs/fraction", "description": "a score is missing (counted unparsed) where "
                            "the judge replies with a number 0..100 with less than this probability"},
        "batch_size": {"$ref": "#/$defs/positive_int", "description": "prompts per forward pass; each prompt is "
                       "followed by the ~200 tokens of the trie of number replies"}})

    def __init__(self, name: str, settings: dict, **context):
        super().__init__(name, settings, **context)
        from safedrift.models import load_model, load_tokenizer, set_threads, use_bf16

        set_threads(context.get("threads"))
        path = model_path(name, settings, context)
        self.rubrics = resolve_rubrics(name, settings.get("rubrics"))
        self.min_mass = float(settings.get("min_number_mass", MIN_NUMBER_MASS))
        self.batch_size = int(settings.get("batch_size", DEFAULT_BATCH_SIZE))
        trust = bool(settings.get("trust_remote_code", False))
        dtype = settings.get("dtype") or ("bfloat16" if use_bf16("auto") else "float32")
        self.tokenizer = load_tokenizer(path, padding_side="left", trust_remote_code=trust)
        # Before the model loads: a tokenizer that cannot write the scale fails in seconds.
        self.paths = number_paths(self.tokenizer, self.chat_prompt("?"), f"judges.{name}.model {path}")
        self.model = load_model(path, dtype=dtype, trust_remote_code=trust).eval()
        self.continuations = 0  # continuation sequences run after the prompts, for the cost of a score
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

        from safedrift.judges.number_passes import trie_statistics

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
                *statistics, sequences = trie_statistics(self.model, self.paths, enc, first_token,
                                                         result.past_key_values)
                out[idx] = number_probabilities(self.paths, *statistics)
                self.continuations += sequences
        return out

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

