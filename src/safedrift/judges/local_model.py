"""A local Hugging Face judge model read through its first reply token (guard, harmbench_classifier,
strongreject).

These judges ask a question whose answer is one word or one digit and read the next-token
distribution at the end of the prompt instead of sampling a reply: the probability of each
answer is the summed probability of the vocabulary tokens that spell it ("unsafe", " unsafe",
"Unsafe"; "Yes", "yes"; "3", " 3"), and the judge's score is that distribution renormalised over
the answers. Where the answers carry less than `min_mass` of the probability the judge did not
answer the question: the score is NaN and counted unparsed, never a decision.

A judge may step over whitespace first (answer_probabilities_after_whitespace; the guard does):
Llama Guard 3 writes "\n\n" before its verdict. Where the likeliest next token is whitespace-only,
it is appended and the answer is read again after it, a few times at most; an answer's probability
is then summed over the positions read, each weighted by the probability of the whitespace written
before it (P(unsafe) + P("\n\n")·P(unsafe | "\n\n")). A model that answers on its first token is
read exactly as before.

Prompts of a batch are left-padded with position ids counted from each row's first real token
(as generate() does), so a row scores the same alone as in any batch.
"""

from __future__ import annotations

import inspect

import numpy as np

from safedrift.errors import SafedriftError

DEFAULT_BATCH_SIZE = 16


def model_path(name: str, settings: dict, context: dict) -> str:
    """judges.<name>.model, with 'reference' resolved to the scored model's default reference."""
    path = settings["model"]
    if path == "reference":
        path = context.get("reference_model")
        if not path:
            raise SafedriftError(f"judges.{name}.model is 'reference' but no reference model was given; "
                                 "pass --path reference_model=PATH")
    return path


def word_token_ids(tokenizer, words, key: str) -> dict[str, np.ndarray]:
    """word -> ids of the tokens that spell it alone (decoded, stripped, any case). A word no single
    token spells fails here, before the model loads: its first token would also start other words."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    spelled = np.array([t.strip().lower() for t in texts], dtype=object)
    ids = {w: np.flatnonzero(spelled == w.lower()) for w in words}
    missing = [w for w, found in ids.items() if not len(found)]
    if missing:
        raise SafedriftError(f"{key}: the judge's tokenizer has no single token for {', '.join(map(repr, missing))}; "
                             "this judge reads its answer from the first reply token, use a model whose "
                             "vocabulary has one")
    return ids


def whitespace_token_ids(tokenizer) -> np.ndarray:
    """Ids of the tokens that decode to whitespace only ("\n\n", "\n", " "), special tokens excluded."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    special = set(tokenizer.all_special_ids)
    return np.array([i for i, t in enumerate(texts) if not t.strip() and i not in special], dtype=np.int64)


class FirstTokenModel:
    """A causal LM and its tokenizer, loaded for first-token reading. Settings: model, dtype
    (default: bfloat16 on a CUDA device that supports it, float32 otherwise), trust_remote_code,
    batch_size. Context: reference_model (what 'reference' stands for), threads."""

    def __init__(self, name: str, settings: dict, context: dict, chat_template: bool = True):
        from safedrift.models import load_tokenizer, set_threads, use_bf16

        set_threads(context.get("threads"))
        self.key = f"judges.{name}.model"
        self.path = model_path(name, settings, context)
        self.trust = bool(settings.get("trust_remote_code", False))
        self.dtype = settings.get("dtype") or ("bfloat16" if use_bf16("auto") else "float32")
        self.batch_size = int(settings.get("batch_size", DEFAULT_BATCH_SIZE))
        self.tokenizer = load_tokenizer(self.path, padding_side="left", key=self.key,
                                        trust_remote_code=self.trust, chat_template=chat_template)
        self.model = None

    def load(self) -> None:
        """Load the weights (after the judge checked its tokenizer and prompts: those fail in seconds)."""
        from safedrift.models import load_model

        self.model = load_model(self.path, dtype=self.dtype, trust_remote_code=self.trust).eval()
        # Only the last position's logits are read: [B, V] instead of [B, P, V].
        self.last_logits = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(
            self.model.forward).parameters else {}

    def encode(self, prompts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        return [self.tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]

    def next_token_probabilities(self, prompts: list[str] | list[list[int]], add_special_tokens: bool = False):
        """Yield (indices into prompts, [b, V] float32 probabilities of the next token) batch by batch,
        shortest prompts first (less padding). Prompts are texts or token id lists."""
        import torch

        ids = prompts if prompts and isinstance(prompts[0], list) else self.encode(prompts, add_special_tokens)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        device = next(self.model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(device)
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = self.model(**enc, position_ids=positions, **self.last_logits).logits[:, -1, :]
            yield idx, torch.softmax(logits.float(), dim=-1)

    def answer_probabilities(self, prompts: list[str], answers: dict[str, np.ndarray],
                             add_special_tokens: bool = False) -> dict[str, np.ndarray]:
        """answer -> [len(prompts)] probability that the first reply token spells it (answers: the
        token ids of each answer, word_token_ids)."""
        return self.answer_probabilities_after_whitespace(prompts, answers, add_special_tokens)[0]

    def answer_probabilities_after_whitespace(self, prompts: list[str], answers: dict[str, np.ndarray],
                                              add_special_tokens: bool = False, whitespace=(), steps: int = 0
                                              ) -> tuple[dict[str, np.ndarray], list[list[int]]]:
        """answer -> [len(prompts)] probability that the reply, after the whitespace tokens greedily
        stepped over (at most `steps` of the ids `whitespace`; see the module docstring), starts with
        it; and each prompt's token ids with that whitespace appended (where the answer is written)."""
        ids = self.encode(prompts, add_special_tokens)
        out = {a: np.zeros(len(prompts)) for a in answers}
        reach = np.ones(len(prompts))  # probability of the whitespace appended so far
        blank = np.isin(np.arange(len(self.tokenizer)), np.asarray(whitespace, dtype=np.int64))
        active = list(range(len(prompts)))
        for step in range(steps + 1):
            going_on = []
            for idx, probs in self.next_token_probabilities([ids[i] for i in active]):
                rows = np.array([active[i] for i in idx])
                for a, token_ids in answers.items():
                    out[a][rows] += reach[rows] * probs[:, token_ids].sum(-1).double().cpu().numpy()
                if step == steps:
                    continue
                p_top, top = (t.cpu().numpy() for t in probs.max(-1))
                for row, token, p in zip(rows, top, p_top):
                    if token < len(blank) and blank[token]:
                        ids[row] = ids[row] + [int(token)]
                        reach[row] *= float(p)
                        going_on.append(int(row))
            if not going_on:
                break
            active = going_on
        return out, ids


def normalised(answers: dict[str, np.ndarray], min_mass: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The answer probabilities renormalised over the answers, and where they were read: rows whose
    answers carry less than min_mass are NaN (and False in the mask)."""
    mass = sum(answers.values())
    read = (mass >= min_mass) & (mass > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {a: np.where(read, p / mass, np.nan) for a, p in answers.items()}, read
