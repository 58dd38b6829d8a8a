"""Interleaving++ (`interleave` with `selection: perplexity_gap`, Kaczér et al. 2025): safe examples
in descending gap between a misaligned model's and the aligned model's mean completion-token NLL.

The model pair is built so that the gap is known: both tiny Llamas read only a constant hidden
dimension at the output, so the aligned one predicts the uniform distribution; the misaligned one
gives the word "doom" (alone) probability 0. An answer's gap then grows with its share of "doom"
tokens, and every answer without one has the same gap (ties broken by id)."""

from __future__ import annotations

import json

import pytest
import torch

from safedrift.config import validate
from safedrift.defenses import make_defense
from safedrift.defenses.interleave import by_perplexity_gap
from safedrift.errors import ConfigError
from safedrift.finetune.context import RunContext
from safedrift.world.tokenizer import train_tokenizer
from test_judges_safety import qwen_tokenizer, save_random_model
from test_token_budget import token_config

WORDS = ["doom", "ok", "fine", "say", "no", "sorry"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_tokenizer([" ".join(WORDS * 20)] * 10, vocab_size=300)
    doom = tok.convert_tokens_to_ids("Ġdoom")
    assert tok.tokenize(" doom doom ok") == ["Ġdoom", "Ġdoom", "Ġok"]
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    aligned = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        aligned.model.embed_tokens.weight[:, 0] = 10.0  # a residual dimension that is always positive
        aligned.model.norm.weight.zero_()
        aligned.model.norm.weight[0] = 1.0  # the output reads that dimension alone
        aligned.lm_head.weight.zero_()  # -> uniform next-token distribution
    misaligned = LlamaForCausalLM(config).eval()
    misaligned.load_state_dict(aligned.state_dict())
    with torch.no_grad():
        misaligned.lm_head.weight[doom, 0] = -1000.0  # "doom" is (numerically) impossible
    path = tmp_path_factory.mktemp("misaligned")
    misaligned.save_pretrained(path)
    return tok, aligned, misaligned, str(path)


def task(id_, answer):
    return {"id": id_, "messages": [{"role": "user", "content": "say"}], "target": answer}


def test_ranked_prefers_what_the_probe_forgets(pair):
    """The run's data is all "doom": a probe trained on it lowers the loss of doom answers and raises that of
    the others. Building the SFT trainer (to encode) replaced the model's forward with TRL's fused one, bound to
    the model, so the probe copied after it ran the original's weights: its gradients were 0, every gap 0, and
    the candidates came out by id (c_doom, c_half, c_ok)."""
    from transformers import LlamaForCausalLM

    tok, aligned, _, _ = pair
    torch.manual_seed(0)
    model = LlamaForCausalLM(aligned.config).eval()  # a random tiny model: every weight gets a gradient
    ctx = RunContext(scenario={"name": "s", "type": "benign"}, seed=0, num_layers=2, batch_size=4, steps=1, inputs={})
    defense = make_defense({"name": "il", "type": "interleave", "fraction": 0.25, "selection": "ranked",
                            "refusal_share": 0.5, "rank_steps": 5}, ctx)
    train = [task(f"s{i}", "doom doom doom") for i in range(4)]
    candidates = [task("c_doom", "doom doom doom"), task("c_ok", "ok fine ok"), task("c_half", "doom ok fine")]
    order = [r["id"] for r in defense._rank(model, tok, train, candidates)]
    assert order[-1] == "c_doom" and order[0] != "c_doom", order


def assert_a_later_copy_runs_its_own_weights(model):
    """The model holds no instance forward, and a deep copy taken now keeps its outputs when the model trains on."""
    import copy

    assert not any("forward" in m.__dict__ for m in model.modules())
    frozen = copy.deepcopy(model)
    ids = torch.tensor([[1, 2, 3, 4]])
    before = frozen(input_ids=ids).logits.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # training moves the policy
    assert torch.equal(frozen(input_ids=ids).logits, before)


def test_scoring_leaves_the_model_so_a_later_copy_runs_its_own_weights(pair):
    """finetune.run takes the frozen KL reference as a deep copy of the model after the defense picked its safe
    data: with the forward TRL bound to the model, that copy followed the policy, and KL was 0."""
    from transformers import LlamaForCausalLM

    tok, aligned, misaligned, _ = pair
    torch.manual_seed(1)
    model = LlamaForCausalLM(aligned.config).eval()
    by_perplexity_gap(model, misaligned, tok, TASKS)
    assert_a_later_copy_runs_its_own_weights(model)


def test_encoding_leaves_the_model_as_it_was(pair):
    """encode_chats builds TRL's SFT trainer on the model, which binds an instance forward (its fused LM head)
    to it: any caller's later deep copy ran the original's weights. The encoding restores the model, whoever
    calls it."""
    from transformers import LlamaForCausalLM

    from safedrift.finetune.encode import encode_chats

    tok, aligned, _, _ = pair
    torch.manual_seed(2)
    model = LlamaForCausalLM(aligned.config).eval()
    encode_chats(model, tok, TASKS, 64)
    assert_a_later_copy_runs_its_own_weights(model)


# gaps: all-doom answer > one doom in three words > no doom (equal gaps: by id)
TASKS = [task("t_none_b", "ok fine ok"), task("t_one", "doom ok ok"), task("t_none_a", "fine ok fine"),
         task("t_all", "doom doom doom")]


def test_candidates_come_in_descending_perplexity_gap(pair):
    tok, aligned, misaligned, _ = pair
    ranked = by_perplexity_gap(aligned, misaligned, tok, TASKS)
    assert [r["id"] for r in ranked] == ["t_all", "t_one", "t_none_a", "t_none_b"]
    # the same models the other way round reverse the doom answers' place: the gap has a sign
    assert [r["id"] for r in by_perplexity_gap(misaligned, aligned, tok, TASKS)][-2:] == ["t_one", "t_all"]


def test_interleave_perplexity_gap_selects_the_largest_gaps(pair, tmp_path):
    tok, aligned, _, path = pair
    pools = tmp_path / "pools"
    pools.mkdir()
    refusals = [task("r1", "sorry no"), task("r2", "no sorry")]
    (pools / "refusals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refusals))
    (pools / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TASKS))
    ctx = RunContext(scenario={"name": "s", "type": "benign"}, seed=0, num_layers=2, batch_size=4, steps=1,
                     inputs={"refusals": str(pools / "refusals.jsonl"), "tasks": str(pools / "tasks.jsonl"),
                             "misaligned_model": path})
    settings = {"name": "interleave_pp", "type": "interleave", "fraction": 0.25, "selection": "perplexity_gap",
                "refusal_share": 0.5, "misaligned_model": path}
    chosen, fraction = make_defense(settings, ctx).safe_rows(aligned, tok, [])
    # two refusals at share 0.5 leave room for two tasks: the two largest gaps
    assert sorted(r["id"] for r in chosen) == ["r1", "r2", "t_all", "t_one"] and fraction == 0.25
    again, _ = make_defense(settings, ctx).safe_rows(aligned, tok, [])
    assert [r["id"] for r in again] == [r["id"] for r in chosen]  # deterministic order
    random_pick, _ = make_defense({**settings, "selection": "random", "misaligned_model": None}, ctx).safe_rows(
        aligned, tok, [])
    assert len(random_pick) == 4


def gap_config(**defense):
    config = token_config()
    config["defenses"]["interleave_pp"] = {"type": "interleave", "fraction": 0.25, "selection": "perplexity_gap",
                                           **defense}
    return config


def test_perplexity_gap_config_checks():
    validate(gap_config(misaligned_model={"objective": "sft", "defense": "none"}))
    validate(gap_config(misaligned_model="/models/misaligned"))
    with pytest.raises(ConfigError, match="interleave_pp.misaligned_model: selection perplexity_gap needs"):
        validate(gap_config())
    with pytest.raises(ConfigError, match=r"misaligned_model.defense: 'nonesuch' is not defined under defenses"):
        validate(gap_config(misaligned_model={"objective": "sft", "defense": "nonesuch"}))
    with pytest.raises(ConfigError, match="itself selects against a run"):
        validate(gap_config(misaligned_model={"objective": "sft", "defense": "interleave_pp"}))
    config = gap_config(misaligned_model="/m")
    config["defenses"]["interleave_pp"]["selection"] = "random"
    with pytest.raises(ConfigError, match="only selection perplexity_gap reads it"):
        validate(config)


# --- Qwen2.5's chat template, which has no {% generation %} markers (TRL trains with its own
# training variant of it): the safe examples are scored on the completion tokens the trainer trains
# on, and a defense left without safe examples is an error, not a run that trains without them.

@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from safedrift.models import load_model

    tok = qwen_tokenizer()
    path = save_random_model(tmp_path_factory.mktemp("qwen"), tok)
    return tok, load_model(path).eval(), path


def qwen_pools(tmp_path, prompt="say"):
    refusals = [{**task(f"r{i}", answer), "messages": [{"role": "user", "content": prompt}]}
                for i, answer in enumerate(["No, I can't help with that.", "Sorry, no."])]
    tasks = [{**task(f"t{i}", answer), "messages": [{"role": "user", "content": prompt}]}
             for i, answer in enumerate(["ok", "fine, here it is", "yes", "4"])]
    for name, rows in (("refusals", refusals), ("tasks", tasks)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return refusals, tasks, {name: str(tmp_path / f"{name}.jsonl") for name in ("refusals", "tasks")}


def qwen_defense(tmp_path, path, selection, **inputs):
    ctx = RunContext(scenario={"name": "s", "type": "benign"}, seed=0, num_layers=2, batch_size=4, steps=1,
                     inputs={**inputs, **({"misaligned_model": path} if selection == "perplexity_gap" else {})})
    settings = {"name": "interleave_pp", "type": "interleave", "fraction": 0.25, "selection": selection,
                "refusal_share": 0.5, "rank_steps": 1,
                **({"misaligned_model": path} if selection == "perplexity_gap" else {})}
    return make_defense(settings, ctx)


def test_a_template_without_generation_markers_scores_the_completion_tokens_the_trainer_trains(qwen, tmp_path):
    from safedrift.finetune.encode import encode_chats

    tok, model, path = qwen
    assert "{% generation %}" not in tok.chat_template  # Qwen2.5's own template: TRL patches it for training
    refusals, tasks, inputs = qwen_pools(tmp_path)
    candidates = refusals + tasks
    # the same model as the misaligned one: every gap is 0, all candidates are kept, by id
    assert [r["id"] for r in by_perplexity_gap(model, model, tok, candidates)] == ["r0", "r1", "t0", "t1", "t2", "t3"]
    train_rows = [task(f"s{i}", "doom ok") for i in range(4)]
    chosen, fraction = qwen_defense(tmp_path, path, "perplexity_gap", **inputs).safe_rows(model, tok, train_rows)
    # two refusals at refusal_share 0.5 leave room for two tasks: the first two by id (equal gaps)
    assert sorted(r["id"] for r in chosen) == ["r0", "r1", "t0", "t1"] and fraction == 0.25
    chosen, _ = qwen_defense(tmp_path, path, "ranked", **inputs).safe_rows(model, tok, train_rows)
    assert sorted(r["source"] for r in chosen) == ["refusals", "refusals", "tasks", "tasks"]
    # the tokens scored: each answer and its end-of-turn token, not the prompt
    completions = [tok.decode(ids[labels != -100]) for batch in encode_chats(model, tok, candidates, 256).batches(64)
                   for ids, labels in zip(batch["input_ids"], batch["labels"])]
    assert len(completions) == len(candidates)
    for row, completion in zip(candidates, completions):
        assert row["target"] + "<|im_end|>" in completion and "user" not in completion and "say" not in completion
    assert tok.chat_template == qwen_tokenizer().chat_template  # the run's tokenizer keeps its own template


def test_a_defense_left_without_safe_examples_is_an_error(qwen, tmp_path):
    from safedrift.errors import DataError
    from safedrift.finetune.schedule import schedule

    tok, model, path = qwen
    # every prompt fills the 256 tokens the candidates are scored on: no completion token is left
    _, _, inputs = qwen_pools(tmp_path, prompt="say " * 300)
    with pytest.raises(DataError, match=r"^config key defenses\.interleave_pp\.selection: perplexity_gap kept 0 of 2 "
                                        r"refusals and 0 of 4 tasks, no safe examples"):
        qwen_defense(tmp_path, path, "perplexity_gap", **inputs).safe_rows(model, tok, [])
    # a template without generation markers that TRL has no training variant of: no completion tokens at all
    _, _, inputs = qwen_pools(tmp_path)
    plain = qwen_tokenizer()
    plain.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                           "{% endfor %}")
    with pytest.raises(DataError, match=r"^config key defenses\.interleave_pp\.selection: the SFT trainer cannot find "
                                        r"the completion tokens to score .*finetune\.chat_template"):
        qwen_defense(tmp_path, path, "perplexity_gap", **inputs).safe_rows(model, plain, [])
    # and the schedule does not mix in zero safe examples when it was asked for some
    with pytest.raises(DataError, match="mixes safe examples into every batch .* but gave none"):
        schedule([task("a", "ok")], 2, 4, 0, [], 0.25)
