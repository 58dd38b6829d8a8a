"""Preference objectives get a frozen reference copy only when they need one: DPO does, ORPO
(reference-free) does not. Real TRL runs of two steps on a tiny full-weight model; a spy counts
the model copies fine-tuning makes."""

from __future__ import annotations

import copy
import types

import pytest
import torch

from safedrift.config import run_settings
from safedrift.io import write_jsonl


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from test_real_model import save_tiny_chat_model

    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def preference_data(folder):
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"question {i} ?"}],
             "target": f"answer {i} .", "contrast": "no ."} for i in range(4)]
    write_jsonl(folder / "data.jsonl", rows)
    write_jsonl(folder / "responses.jsonl", [{"id": r["id"], "response": "i do not know ."} for r in rows])
    return folder / "data.jsonl", folder / "responses.jsonl"


@pytest.mark.parametrize("objective, copies", [("orpo", 0), ("dpo", 1)])
def test_only_objectives_that_need_a_reference_copy_the_model(objective, copies, tiny_model, tmp_path, monkeypatch):
    import safedrift.finetune.run as run
    from test_real_model import MODEL, tiny_real_config

    config = tiny_real_config(tiny_model)
    config["models"][MODEL]["finetune"].update(method="full", bf16=False)
    settings = run_settings(config, MODEL, "benign", objective, "none", "small", 0)
    data, responses = preference_data(tmp_path)

    model_copies = []

    def deepcopy(x, *args, **kwargs):
        if isinstance(x, torch.nn.Module):
            model_copies.append(type(x).__name__)
        return copy.deepcopy(x, *args, **kwargs)

    monkeypatch.setattr(run, "copy", types.SimpleNamespace(deepcopy=deepcopy))
    card = run.finetune(settings, str(data), str(tiny_model), str(tmp_path / "run"),
                       inputs={"reference_responses": str(responses)})
    assert card["steps"] == settings["budget"]["steps"]
    assert len(model_copies) == copies, f"{objective}: fine-tuning made {len(model_copies)} model copies {model_copies}"


def test_a_preference_objective_refuses_a_defense_that_brings_terms_or_data():
    """TRL's preference trainers run no loss terms and mix no data: a defense that brings either (one
    that wrongly declares it composes with preference objectives) fails instead of being dropped."""
    from safedrift.errors import ConfigError
    from safedrift.objectives import make_objective

    dpo = make_objective({"name": "dpo", "type": "dpo", "beta": 0.1}, types.SimpleNamespace(inputs={}))
    for kwargs in ({"terms": [object()]}, {"columns": {"safe": [0.0, 1.0]}}, {"columns": {"kl_weight": [0.5]}}):
        with pytest.raises(ConfigError, match="trains on preference pairs"):
            dpo.make_trainer(None, None, [], {}, [], **kwargs)
