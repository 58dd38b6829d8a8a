"""Rubric judge: a local Hugging Face chat model reads a rubric and answers with a number.

One forward pass per (row, rubric), batched; no generation. The score is the
probability-weighted mean over the next-token distribution restricted to tokens that spell
an integer 0..100 (the EM judge's method, `numbers.weighted_mean`); where number tokens hold
less than `min_number_mass` of the probability the score is NaN and counted in `unparsed`.
Tokenizers that split numbers into single digits (Qwen, Gemma...) only offer 0..9 as one
token, so the score then is ten times the first digit's expectation: prefer a judge model
whose tokenizer has whole numbers (Llama 3, GPT-style) or the `openai` judge with logprobs.
"""

from __future__ import annotations

import numpy as np

from safedrift.errors import SafedriftError
from safedrift.judges.base import Judge, question_text
from safedrift.judges.numbers import MIN_NUMBER_MASS, number_value, weighted_mean
from safedrift.judges.rubrics import fill, resolve_rubrics, to_column_scale

DEFAULT_BATCH_SIZE = 16


def number_tokens(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, values) of every vocabulary token that decodes to an integer 0..100."""
    ids, values = [], []
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    for token_id, text in enumerate(texts):
        value = number_value(text)
        if value is not None:
            ids.append(token_id)
            values.append(value)
    return np.array(ids, dtype=np.int64), np.array(values, dtype=np.float64)


class RubricJudge(Judge):
    """Settings: model (folder, hub id, or 'reference'), rubrics, min_number_mass, batch_size, dtype
    (default: bfloat16 on a CUDA device that supports it, else float32), trust_remote_code.
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
        trust = bool(settings.get("trust_remote_code", False))
        dtype = settings.get("dtype") or ("bfloat16" if use_bf16("auto") else "float32")
        self.tokenizer = load_tokenizer(path, padding_side="left", trust_remote_code=trust)
        self.model = load_model(path, dtype=dtype, trust_remote_code=trust).eval()
        self.number_ids, self.number_values = number_tokens(self.tokenizer)
        if len(self.number_ids) == 0:
            raise SafedriftError(f"judges.{name}.model {path}: no token of its vocabulary is a number 0..100; "
                                 "it cannot be a rubric judge")

    def judge_prompt(self, column: str, row: dict) -> str:
        text = fill(self.rubrics[column], question_text(row["messages"]), row["response"])
        return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)

    def number_probabilities(self, prompts: list[str]) -> np.ndarray:
        """[len(prompts), n_number_tokens]: next-token probability of each number token."""
        import torch

        out = np.zeros((len(prompts), len(self.number_ids)))
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        device = next(self.model.parameters()).device
        number_ids = torch.as_tensor(self.number_ids, device=device)
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(device)
                # Left padding: the last position of every row is its next-token prediction, and
                # positions count from each row's first real token (as generate() does), so a
                # row scores the same in any batch.
                positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                logits = self.model(**enc, position_ids=positions).logits[:, -1, :].float()
                probs = torch.softmax(logits, dim=-1)[:, number_ids]
                out[idx] = probs.cpu().numpy()
        return out

    def score_columns(self, rows: list[dict]) -> dict[str, np.ndarray]:
        columns = {}
        unparsed = np.zeros(len(rows), dtype=np.int64)
        for column in self.rubrics:
            probs = self.number_probabilities([self.judge_prompt(column, r) for r in rows])
            scores = weighted_mean(probs, self.number_values, self.min_mass)
            unparsed += np.isnan(scores)
            columns[column] = to_column_scale(column, scores)
        columns["unparsed"] = unparsed
        return columns
