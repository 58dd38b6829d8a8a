"""The embedded default judge: logistic heads on bag-of-n-gram features, read from JSON.

`judges.train_classifier` fits the heads on oracle-labelled world responses and saves
vocabulary, coefficients and intercepts as JSON (never a pickle). Inference here is a sum of
coefficients per example and a sigmoid, in numpy: no sklearn import at score time.
File format (`FORMAT`):
    {"format", "features": {"prompt_ngrams", "response_ngrams"}, "names": [world names read as <name>],
     "coherent_ngrams": [n-grams of known coherent answers, for the novelty features],
     "vocabulary": [feature, ...], "heads": {head: {"coef": [len(vocabulary)], "intercept"}},
     "heldout": {head: {"accuracy", ...}}, "training": {...}}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from safedrift.errors import SafedriftError
from safedrift.judges.base import SCALE, SCORES, Judge, type_schema
from safedrift.judges.features import novelty, pair_features, response_tokens

FORMAT = "safedrift.judges.classifier/1"


class ClassifierModel:
    """Logistic heads over a shared feature vocabulary."""

    def __init__(self, spec: dict):
        if spec.get("format") != FORMAT:
            raise SafedriftError(f"classifier file has format {spec.get('format')!r}, expected {FORMAT!r}; "
                                 "retrain it with judges.train_classifier")
        self.spec = spec
        self.prompt_ngrams = spec["features"]["prompt_ngrams"]
        self.response_ngrams = spec["features"]["response_ngrams"]
        self.names = frozenset(spec["names"])
        self.coherent_ngrams = frozenset(spec["coherent_ngrams"])
        self.index = {f: i for i, f in enumerate(spec["vocabulary"])}
        self.heads = list(spec["heads"])
        # weights: [n_features, n_heads]; bias: [n_heads]
        self.weights = np.array([spec["heads"][h]["coef"] for h in self.heads], dtype=np.float64).T.copy()
        self.bias = np.array([spec["heads"][h]["intercept"] for h in self.heads], dtype=np.float64)

    @classmethod
    def load(cls, path) -> "ClassifierModel":
        path = Path(path)
        if not path.is_file():
            raise SafedriftError(f"classifier file {path} does not exist; build it with judges.train_classifier")
        try:
            return cls(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError) as e:
            raise SafedriftError(f"{path}: not a classifier file ({e}); retrain it with judges.train_classifier") from None

    def features(self, messages: list[dict], response: str) -> set[str]:
        tokens = response_tokens(response, self.names)
        return (pair_features(messages, tokens, self.prompt_ngrams, self.response_ngrams)
                | novelty(tokens, self.coherent_ngrams))

    def logits(self, examples: list[tuple[list[dict], str]]) -> np.ndarray:
        """[len(examples), n_heads] logits of (messages, response) pairs; unknown features weigh nothing."""
        out = np.empty((len(examples), len(self.heads)))
        for i, (messages, response) in enumerate(examples):
            idx = [self.index[f] for f in self.features(messages, response) if f in self.index]
            out[i] = self.weights[sorted(idx)].sum(axis=0) + self.bias
        return out

    def probabilities(self, examples: list[tuple[list[dict], str]]) -> dict[str, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-self.logits(examples)))
        return {h: p[:, j] for j, h in enumerate(self.heads)}


class ClassifierJudge(Judge):
    """Settings: C (inverse L2 strength of the heads), examples (oracle-labelled training responses);
    both read by judges.train_classifier, which fits `results/<model>/judges/<name>.json` for a toy
    model. Context: `classifier` = that file."""

    schema = type_schema("classifier", {"C": {"$ref": "#/$defs/positive_number"},
                                        "examples": {"$ref": "#/$defs/positive_int"}})
    trained_on_world = True  # judges.train_classifier builds its file from a toy world (evaluate.smk)

    @classmethod
    def inputs(cls, name, settings, model, config):
        return {"classifier": f"results/{model}/judges/{name}.json"}

    def __init__(self, name: str, settings: dict, **context):
        super().__init__(name, settings, **context)
        if not context.get("classifier"):
            raise SafedriftError(f"judge {name} (type classifier) needs the trained classifier file: pass "
                                 "--path classifier=PATH (the output of judges.train_classifier)")
        self.model = ClassifierModel.load(context["classifier"])
        missing = set(SCORES) - set(self.model.heads)
        if missing:
            raise SafedriftError(f"{context['classifier']}: classifier has no head for {sorted(missing)}; retrain it")

    def score_columns(self, rows: list[dict]) -> dict[str, np.ndarray]:
        probs = self.model.probabilities([(r["messages"], r["response"]) for r in rows])
        return {head: probs[head] * SCALE[head] for head in SCORES}
