"""Vaccine (world.vaccine): the perturbation on constructed gradients, the perturbed loss on a tiny
Llama, and the alignment it builds on the smoke world's alignment chats (real TRL SFTTrainer)."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from safedrift.world.vaccine import attention_gradients, attention_modules, perturbation, perturbed, perturbed_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_perturbation_has_joint_norm_rho_and_follows_each_layers_gradient():
    g = [torch.tensor([[[3.0, 0.0]]]), torch.tensor([[[0.0, 4.0]]])]  # [B=1, T=1, H=2] per layer; joint norm 5
    e = perturbation(g, rho=1.0)
    assert torch.allclose(e[0], torch.tensor([[[0.6, 0.0]]])) and torch.allclose(e[1], torch.tensor([[[0.0, 0.8]]]))
    g = [torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4)]
    e = perturbation(g, rho=2.5)
    joint = torch.sqrt(sum(x.pow(2).sum() for x in e))
    assert joint.item() == pytest.approx(2.5, rel=1e-5)
    for gl, el in zip(g, e):  # each layer along its own gradient, with one shared scale
        assert el.shape == gl.shape
        assert torch.allclose(el, gl * (2.5 / torch.sqrt(sum(x.pow(2).sum() for x in g))), atol=1e-6)
    assert all(torch.equal(x, torch.zeros_like(x)) for x in perturbation(g, rho=0.0))


def tiny_batch():
    from test_losses import tiny_llama

    model = tiny_llama()
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 10, 11, 2, 0]])
    labels = torch.tensor([[-100, -100, 6, 7, 8, 2], [-100, -100, 10, 11, 2, -100]])
    return model, {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": labels}


def test_attention_gradients_are_one_per_layer_and_leave_weight_gradients_alone():
    model, batch = tiny_batch()
    grads = attention_gradients(model, batch)
    assert len(grads) == len(attention_modules(model)) == 2
    assert all(g.shape == (2, 6, 16) for g in grads)
    assert all(p.grad is None for p in model.parameters())
    # the gradient is the loss's: a step along it raises the loss at first order
    delta = [1e-3 * g for g in grads]
    with torch.no_grad():
        plain = model(**batch).loss
        with perturbed(model, delta):
            up = model(**batch).loss
    expected = sum((g * d).sum() for g, d in zip(grads, delta))
    assert (up - plain).item() == pytest.approx(expected.item(), rel=0.05)


def test_rho_zero_is_plain_alignment_and_rho_raises_the_loss():
    model, batch = tiny_batch()
    with torch.no_grad():
        plain = model(**batch).loss
    assert torch.equal(perturbed_loss(model, batch, rho=0.0), plain)
    assert perturbed_loss(model, batch, rho=0.5) > plain  # the worst-case direction, not noise
    # and the hooks are gone afterwards
    with torch.no_grad():
        assert torch.equal(model(**batch).loss, plain)


@pytest.fixture(scope="module")
def smoke_alignment(tmp_path_factory):
    """The smoke world's alignment chats and a tiny (untrained) toy Llama with the world's tokenizer."""
    from pathlib import Path

    from safedrift.config import world_settings
    from safedrift.io import read_jsonl
    from safedrift.world.pretrain import build_model
    from safedrift.world.splits import product_settings, write_product
    from safedrift.world.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("vaccine")
    config = yaml.safe_load((Path(__file__).parents[1] / "configs/smoke.yaml").read_text())
    write_product(product_settings(world_settings(config, "toy"), "alignment"), "alignment", root / "world")
    chats = root / "world/align.jsonl"
    rows = read_jsonl(chats)[:64]
    tok = train_tokenizer([m["content"] for r in rows for m in r["messages"]], 400)
    arch = {**config["toy_model"], "hidden_size": 32, "intermediate_size": 64, "num_heads": 2}
    model = build_model(arch, tok)
    model.save_pretrained(root / "pretrained")
    tok.save_pretrained(root / "pretrained")
    from safedrift.io import write_jsonl

    write_jsonl(root / "align.jsonl", rows)
    settings = {**config["align"], "steps": 3, "batch_size": 4}
    return root, str(root / "align.jsonl"), settings


def aligned(smoke_alignment, name, reference):
    from safedrift.world.align import align

    root, chats, settings = smoke_alignment
    out = root / name
    align(str(root / "pretrained"), chats, settings, str(out), None, reference)
    return load_file(out / "model.safetensors")


def test_vaccine_reference_differs_from_the_default_and_rho_zero_does_not(smoke_alignment):
    default = aligned(smoke_alignment, "default", None)
    vaccine = aligned(smoke_alignment, "vaccine", {"type": "vaccine", "rho": 2.0})
    zero = aligned(smoke_alignment, "zero", {"type": "vaccine", "rho": 0.0})
    assert default.keys() == vaccine.keys()
    assert any(not torch.equal(default[k], vaccine[k]) for k in default)
    assert all(torch.equal(default[k], zero[k]) for k in default)  # same steps, same data: only Vaccine differs
