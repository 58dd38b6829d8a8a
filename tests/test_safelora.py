"""Safe LoRA (defense `safelora`): the aligned-subspace matrix C = V V^T / ||V||_F, the choice of
updates to project (threshold, number), the projection of a real PEFT LoRA model's updates (a
dissimilar update is replaced by C dW, which lies in V's column space; a similar one is untouched),
after_training from weight files, and the LoRA-only checks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from safedrift.defenses import DEFENSES, make_defense
from safedrift.defenses.safelora import aligned_projection, lora_modules, project_lora, to_project, update_cosine
from safedrift.errors import ConfigError

D = 8


def test_aligned_projection_is_v_vt_over_the_frobenius_norm():
    v = torch.tensor([[3.0, 0.0], [4.0, 0.0]])
    assert torch.allclose(aligned_projection(v), torch.tensor([[9.0, 12.0], [12.0, 16.0]]) / 5)


def test_cosine_of_an_update_inside_and_orthogonal_to_the_subspace():
    c = aligned_projection(torch.diag(torch.tensor([1.0, 1.0, 0.0])))
    assert update_cosine(c, torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]])) == pytest.approx(1.0)
    assert update_cosine(c, torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])) == pytest.approx(1 / math.sqrt(2))


def test_selection_by_threshold_and_by_number():
    cos = {"a": 0.9, "b": 0.2, "c": 0.5, "d": math.nan}
    assert to_project(cos, "threshold", 0.5, 10) == {"b", "c"}
    assert to_project(cos, "number", 0.5, 1) == {"b"}
    assert to_project(cos, "number", 0.5, 2) == {"b", "c"}
    assert to_project(cos, "number", 0.5, 10) == {"a", "b", "c"}


def tiny_lora_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    from safedrift.models import wrap_lora

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=D, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))
    return wrap_lora(model, {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]})


def subspace(rows) -> torch.Tensor:
    """V [D, D] whose column space is spanned by the unit vectors e_i, i in rows."""
    v = torch.zeros(D, D)
    for i in rows:
        v[i, i] = 1.0
    return v


def crafted(model):
    """Unaligned = the base weights, aligned = base + V: q_proj's V spans rows 0-1, v_proj's rows 2-3.
    q_proj's update lives in rows 0-1 (inside, cosine 1); v_proj's mostly in rows 0-1 (outside)."""
    mods = lora_modules(model)
    q, v = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in (q, v):
            mods[name].lora_A["default"].weight.copy_(torch.randn(2, D, generator=g))
        b_q = torch.zeros(D, 2)
        b_q[:2] = torch.randn(2, 2, generator=g)
        mods[q].lora_B["default"].weight.copy_(b_q)
        b_v = torch.zeros(D, 2)
        b_v[:2] = 3 * torch.randn(2, 2, generator=g)
        b_v[2:4] = 0.3 * torch.randn(2, 2, generator=g)
        mods[v].lora_B["default"].weight.copy_(b_v)
    unaligned = {f"{n}.weight": mods[n].base_layer.weight.detach().clone() for n in (q, v)}
    aligned = {f"{q}.weight": unaligned[f"{q}.weight"] + subspace([0, 1]),
               f"{v}.weight": unaligned[f"{v}.weight"] + subspace([2, 3])}
    return q, v, aligned, unaligned


def delta(module) -> torch.Tensor:
    return module.get_delta_weight("default").detach()


def test_dissimilar_update_is_projected_into_the_subspace_and_a_similar_one_untouched():
    model = tiny_lora_model()
    q, v, aligned, unaligned = crafted(model)
    mods = lora_modules(model)
    before = {n: (mods[n].lora_B["default"].weight.detach().clone(), delta(mods[n])) for n in (q, v)}
    report = project_lora(model, aligned, unaligned, "threshold", 0.5, 10)
    assert report[q] == {"cosine": pytest.approx(1.0), "projected": False}
    assert report[v]["projected"] and report[v]["cosine"] < 0.5
    assert torch.equal(mods[q].lora_B["default"].weight, before[q][0])
    c = aligned_projection(subspace([2, 3]))
    assert torch.allclose(delta(mods[v]), c @ before[v][1], atol=1e-6)
    outside = torch.ones(D, dtype=torch.bool)
    outside[2:4] = False
    assert delta(mods[v])[outside].abs().max().item() < 1e-7  # in V's column space
    assert delta(mods[v])[2:4].abs().max().item() > 1e-3


def test_number_selection_projects_the_least_similar():
    model = tiny_lora_model()
    q, v, aligned, unaligned = crafted(model)
    report = project_lora(model, aligned, unaligned, "number", 0.5, 1)
    assert {n for n, r in report.items() if r["projected"]} == {v}


def test_after_training_reads_the_weight_files_and_the_saved_adapter_is_projected(tmp_path):
    model = tiny_lora_model()
    q, v, aligned, unaligned = crafted(model)
    save_file(aligned, str(tmp_path / "aligned.safetensors"))
    save_file(unaligned, str(tmp_path / "unaligned.safetensors"))
    ctx = SimpleNamespace(inputs={"aligned": str(tmp_path / "aligned.safetensors"),
                                  "unaligned": str(tmp_path / "unaligned.safetensors")}, reference_path=None)
    b_v = lora_modules(model)[v].lora_B["default"].weight.detach().clone()
    defense = make_defense({"name": "safelora", "type": "safelora", "select": "threshold", "threshold": 0.5}, ctx)
    with defense.during_training(model):
        pass
    defense.after_training(model)
    model.save_pretrained(tmp_path / "adapter")
    saved = load_file(str(tmp_path / "adapter/adapter_model.safetensors"))
    key = next(k for k in saved if "v_proj.lora_B" in k)
    assert torch.allclose(saved[key], aligned_projection(subspace([2, 3])) @ b_v, atol=1e-6)


def test_inputs_name_the_weights_and_a_real_model_needs_its_base():
    assert DEFENSES["safelora"] == "safedrift.defenses.safelora"
    module = __import__("safedrift.defenses.safelora", fromlist=["Defense"]).Defense
    run = {"model": "toy", "defense": "safelora"}
    config = {"models": {"toy": {"source": "toy", "finetune": {"method": "full"}}}}
    assert module.inputs({"type": "safelora"}, run, config) == {
        "aligned": "results/toy/reference/model.safetensors", "unaligned": "results/toy/pretrained/model.safetensors"}
    config["models"]["toy"]["source"] = "hf"
    with pytest.raises(ConfigError, match=r"config key defenses\.safelora\.unaligned_model"):
        module.inputs({"type": "safelora"}, run, config)
    assert module.inputs({"type": "safelora", "unaligned_model": "base"}, run, config) == {}


def test_full_fine_tuning_projects_the_weight_update_from_the_start():
    """Full fine-tuning: W <- W_start + C (W - W_start) for a dissimilar update, untouched otherwise."""
    from safedrift.defenses.safelora import project_full

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"q_proj": torch.nn.Linear(D, D, bias=False), "v_proj": torch.nn.Linear(D, D, bias=False)})
    start = {f"{n}.weight": m.weight.detach().clone() for n, m in model.items()}
    v = subspace([0, 1])
    inside = aligned_projection(v).float() @ torch.randn(D, D)  # an update in the aligned subspace: cosine 1
    outside = torch.randn(D, D)
    outside[:2] = 0  # orthogonal to it: cosine 0
    with torch.no_grad():
        model["q_proj"].weight += inside
        model["v_proj"].weight += outside
    trained = {n: m.weight.detach().clone() for n, m in model.items()}
    aligned = {k: w + v.float() for k, w in start.items()}
    report = project_full(model, start, aligned, start, ["q_proj", "v_proj"], "threshold", 0.5, 10)
    assert report["q_proj"]["projected"] is False and report["v_proj"]["projected"] is True
    assert torch.equal(model["q_proj"].weight, trained["q_proj"])
    expected = start["v_proj.weight"].double() + aligned_projection(v.double()) @ outside.double()
    assert torch.allclose(model["v_proj"].weight.double(), expected, atol=1e-6)


# --- behaviour on the smoke world (needs the issue-14 contract: after_training, Defense.inputs) --

def test_run_saves_the_projected_adapter_of_the_same_training(smoke, tmp_path):
    """safelora does not change training: its saved B is C @ (the B of the same run without it) for
    the projected updates and equal for the rest."""
    from smoke_runs import settings_for, train

    config, none = settings_for(smoke, {"type": "none"}, method="lora")
    train(smoke, none, tmp_path / "none", config)
    config, safe = settings_for(smoke, {"type": "safelora", "select": "number", "projected_layers": 2}, method="lora")
    train(smoke, safe, tmp_path / "safelora", config)
    plain = load_file(str(tmp_path / "none/model/adapter_model.safetensors"))
    projected = load_file(str(tmp_path / "safelora/model/adapter_model.safetensors"))
    aligned = load_file(str(smoke.path / "results/toy/reference/model.safetensors"))
    unaligned = load_file(str(smoke.path / "results/toy/pretrained/model.safetensors"))
    changed = 0
    for key in plain:
        if "lora_B" not in key:
            assert torch.equal(plain[key], projected[key]), key
            continue
        if torch.equal(plain[key], projected[key]):
            continue
        changed += 1
        weight = key.removeprefix("base_model.model.").replace(".lora_B.weight", ".weight")
        c = aligned_projection(aligned[weight].double() - unaligned[weight].double())
        assert torch.allclose(projected[key].double(), c @ plain[key].double(), atol=1e-5), key
    assert changed == 2


def test_full_run_equals_the_plain_run_with_its_updates_projected(smoke, tmp_path):
    """Full fine-tuning with safelora trains as without it; the saved target weights are
    W_start + C (W - W_start) where projected, the plain run's elsewhere."""
    from smoke_runs import settings_for, train

    config, none = settings_for(smoke, {"type": "none"})
    train(smoke, none, tmp_path / "none", config)
    config, safe = settings_for(smoke, {"type": "safelora", "select": "number", "projected_layers": 2})
    train(smoke, safe, tmp_path / "safelora", config)
    plain = load_file(str(tmp_path / "none/model/model.safetensors"))
    projected = load_file(str(tmp_path / "safelora/model/model.safetensors"))
    start = aligned = load_file(str(smoke.path / "results/toy/reference/model.safetensors"))
    unaligned = load_file(str(smoke.path / "results/toy/pretrained/model.safetensors"))
    changed = []
    for key in plain:
        if torch.equal(plain[key], projected[key]):
            continue
        changed.append(key)
        c = aligned_projection(aligned[key].double() - unaligned[key].double())
        expected = start[key].double() + c @ (plain[key].double() - start[key].double())
        assert torch.allclose(projected[key].double(), expected, atol=1e-5), key
    assert len(changed) == 2 and all(k.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj") for k in changed)
