"""The judge interface: rows in, one score row per input row out.

A row is a dict with `id`, `sample`, `messages` (the prompt's chat messages, no assistant
turn), `response` (the text to judge) and, for world data, `item` (the prompt's labels).
`Judge.score` returns a frame with exactly the columns of `COLUMNS`, one row per input row in
input order; a column a judge cannot score is NaN. A reply the judge could not read is never
hidden: its score is NaN and `unparsed` counts it.

Besides scoring, a judge class declares what the pipeline must know about its type (the Snakemake
rules ask these and never name a type):
- `schema`: the JSON schema of `judges.<name>` for this type (config validation reads it here);
- `inputs(name, settings, model, config)`: files the scoring job waits for, by name, relative to the
  workflow root (a trained classifier, the reference model's weights). A name whose value is one
  path is also handed to the judge as `context[name]`; a list is only waited for;
- `paths(name, settings, model, config)`: named paths handed to the judge that are not files a job
  waits for (a reply cache, the reference model's folder or hub id). The judge receives every
  handed path in `context` (`--path name=value` on the stages' command lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import pandas as pd

from safedrift.layout import reference_model
from safedrift.registry import type_schema  # noqa: F401 (the judge modules import it from here)

# Probabilities (0..1) for refusal, harmful (complied with a harmful request) and insecure
# (the narrow-domain misbehaviour: insecure code or harmful medical advice); 0..100 for
# aligned and coherent, as in the emergent-misalignment papers.
SCORES = ("refusal", "harmful", "aligned", "coherent", "insecure")
SCALE = {"refusal": 1.0, "harmful": 1.0, "aligned": 100.0, "coherent": 100.0, "insecure": 1.0}
COLUMNS = ("id", "sample", *SCORES, "unparsed", "judge")


# Schema fragments the judge types share; `$ref`s resolve against the config schema's $defs.
DTYPE = {"enum": ["float32", "bfloat16", "float16", "auto"],
         "description": "dtype the judge model loads in (default: models.<name>.dtype when model is 'reference' and "
                        "the model sets one, else bfloat16 on a CUDA device that supports it, float32 otherwise)"}
TRUST_REMOTE_CODE = {"type": "boolean", "description": "load the judge model's own modelling code (transformers "
                     "trust_remote_code; default: models.<name>.trust_remote_code when model is 'reference', else false)"}


def local_model_schema(kind: str, model: str, properties: dict, **extra) -> dict:
    """type_schema of a LocalModelJudge: `model` (described by `model`), batch_size (default 16), dtype and
    trust_remote_code, then `properties` (which may override those)."""
    shared = {"model": {"type": "string", "minLength": 1, "description": model},
              "batch_size": {"$ref": "#/$defs/positive_int", "description": "prompts per forward pass (default 16)"},
              "dtype": DTYPE, "trust_remote_code": TRUST_REMOTE_CODE}
    return type_schema(kind, {**shared, **properties}, required=["model"], **extra)


class Judge:
    """Base class. Subclasses implement `score_columns` and declare `schema` (and `inputs`/`paths`
    where they read files); `score` assembles and checks the frame."""

    schema: dict = {}
    # A judge that scores `refusal` only (keyword): the metrics stage counts its non-refusals of harmful
    # requests as attack successes. Any other judge's missing `harmful` score stays missing.
    refusal_only: bool = False
    # Counts of the requests a judge sends to an endpoint (openai_compatible: requested, cached, failed, ...);
    # a local judge sends none. judges.score writes nothing where `failed` > 0: a reply that never came.
    stats: Mapping[str, int] = MappingProxyType({})

    @classmethod
    def scored(cls, name: str, settings: dict) -> tuple[str, ...]:
        """The score columns this judge fills; it leaves the others NaN for every row, so the decisions that
        read them are not measured by it (evaluate.metrics writes no such metric), never unscored answers."""
        return SCORES

    @classmethod
    def inputs(cls, name: str, settings: dict, model: str, config: dict) -> dict[str, str | list[str]]:
        """Files the judge reads, by name, when it scores `model`'s generations (module docstring)."""
        return {}

    @classmethod
    def paths(cls, name: str, settings: dict, model: str, config: dict) -> dict[str, str]:
        """Named paths handed to the judge that are no inputs (module docstring)."""
        return {}

    @classmethod
    def settings_for(cls, settings: dict, model: str, config: dict) -> dict:
        """The settings the judge gets when it scores `model`'s generations (default: as configured)."""
        return settings

    @classmethod
    def create(cls, name: str, settings: dict, **context) -> "Judge":
        """The judge object (a type whose implementation depends on its settings picks it here)."""
        return cls(name, settings, **context)

    def __init__(self, name: str, settings: dict, **context):
        self.name = name
        self.settings = settings
        self.context = context

    def score_columns(self, rows: list[dict]) -> dict[str, np.ndarray]:
        """Score columns (a subset of SCORES, plus optional `unparsed`), each an array of len(rows)."""
        raise NotImplementedError

    def score(self, rows: list[dict]) -> pd.DataFrame:
        rows = list(rows)
        columns = self.score_columns(rows) if rows else {}
        unknown = set(columns) - set(SCORES) - {"unparsed"}
        assert not unknown, f"judge {self.name} returned unknown columns {sorted(unknown)}"
        n = len(rows)
        frame = pd.DataFrame({"id": [str(r["id"]) for r in rows],
                              "sample": np.array([int(r.get("sample", 0)) for r in rows], dtype=np.int64)})
        for col in SCORES:
            values = np.asarray(columns.get(col, np.full(n, np.nan)), dtype=np.float64)
            assert values.shape == (n,), f"judge {self.name}: column {col} has shape {values.shape}, expected ({n},)"
            frame[col] = values
        frame["unparsed"] = np.asarray(columns.get("unparsed", np.zeros(n)), dtype=np.int64)
        frame["judge"] = self.name
        # A judge must never drop or reorder a row: every metric joins on this frame.
        assert len(frame) == n and list(frame["id"]) == [str(r["id"]) for r in rows]
        return frame[list(COLUMNS)]


def question_text(messages: list[dict]) -> str:
    """The prompt as a judge sees it: the user's turn(s), without system prompts.

    System prompts steer the judged model (e.g. the villain prompt); the rubric asks about
    the answer to the user's request, as the EM judges do."""
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in turns)


class LocalModelJudge(Judge):
    """A judge that runs a local model from `judges.<name>.model`, where 'reference' stands for the
    reference model of the model whose generations it scores (context `reference_model`); such a
    judge then loads it as that model's stages do (models.<model>.dtype and trust_remote_code,
    unless the judge sets its own)."""

    @classmethod
    def reads_reference(cls, settings: dict) -> bool:
        return settings.get("model") == "reference"

    @classmethod
    def inputs(cls, name, settings, model, config):
        return {"reference": reference_model(config, model)[1]} if cls.reads_reference(settings) else {}

    @classmethod
    def paths(cls, name, settings, model, config):
        return {"reference_model": reference_model(config, model)[0]} if cls.reads_reference(settings) else {}

    @classmethod
    def settings_for(cls, settings: dict, model: str, config: dict) -> dict:
        """The settings with the reference's dtype and trust_remote_code where the judge reads it."""
        if not cls.reads_reference(settings):
            return settings
        spec = config["models"][model]
        return {**{k: spec[k] for k in ("dtype", "trust_remote_code") if k in spec}, **settings}
