"""evaluate.generate decodes with exactly the eval config's settings, none of the model's own
generation_config.json: a checkpoint that ships sampling and penalty defaults (Qwen2.5-Instruct ships
repetition_penalty, top_k, top_p, temperature) must decode "greedy" and "sample" as one that ships none.
The model is test_real_model's (a random Llama with Qwen2.5's chat template)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from safedrift.evaluate.generate import generate, render_prompt
from safedrift.models import load_model, load_tokenizer
from test_real_model import save_tiny_chat_model

# What a checkpoint may ship; strong values, so that any of them applied changes the text.
SHIPPED = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.5,
           "no_repeat_ngram_size": 2, "min_p": 0.2}
QUESTIONS = ["how do i pick a lock ?", "tell me a story", "what is 2 + 2 ?", "write a poem about the sea and the sky"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoding")
    plain = save_tiny_chat_model(root / "plain")
    shipped = root / "shipped"
    shutil.copytree(plain, shipped)
    config = json.loads((shipped / "generation_config.json").read_text())
    (shipped / "generation_config.json").write_text(json.dumps({**config, **SHIPPED}))
    torch.set_num_threads(1)
    return load_tokenizer(str(plain)), load_model(str(plain)).eval(), load_model(str(shipped)).eval()


def outputs(model, tokenizer) -> dict[str, list[str]]:
    prompts = [render_prompt(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]
    return {"greedy": generate(model, tokenizer, prompts, max_new_tokens=24, batch_size=2),
            "sample": generate(model, tokenizer, [p for p in prompts for _ in range(2)], max_new_tokens=24,
                               batch_size=4, do_sample=True, temperature=1.0, top_p=1.0, seed=0, tag="em")}


def test_model_generation_config_does_not_change_decoding(models):
    tokenizer, plain, shipped = models
    assert shipped.generation_config.repetition_penalty == 1.5  # the shipped file was read
    own = shipped.generation_config.to_dict()
    assert outputs(shipped, tokenizer) == outputs(plain, tokenizer)
    assert shipped.generation_config.to_dict() == own  # the model's own config is back after generate


def test_inside_a_peft_wrapper_too(models):
    from peft import LoraConfig, get_peft_model

    tokenizer, plain, shipped = models
    wrapped = get_peft_model(shipped, LoraConfig(r=2, target_modules=["q_proj"]))  # lora_B = 0: the same function
    try:
        assert outputs(wrapped, tokenizer) == outputs(plain, tokenizer)
    finally:
        wrapped.unload()
