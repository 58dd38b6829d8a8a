"""Loss terms and the defenses built on them: KL, LDIFS feature distance, NLL, risk weights, steering.

Pure functions are checked against hand-computed values on tiny tensors; the defenses run on a
tiny real LlamaForCausalLM (hidden 16, 2 layers) built from a config, no weights downloaded.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, kl_divergence

from safedrift.defenses import make_defense
from safedrift.defenses.ldifs import evenly_spaced
from safedrift.defenses.steering import load_direction
from safedrift.errors import SafedriftError
from safedrift.finetune.context import RunContext
from safedrift.finetune.terms import Batch
from safedrift.losses.adaptive import risk_weights
from safedrift.losses.features import FeatureDistanceTerm, feature_distance
from safedrift.losses.kl import KLTerm, batch_kl, kl_from_logprobs, kl_to_reference
from safedrift.losses.nll import completion_logprobs, completion_nll, example_nll, shift, token_nll
from safedrift.models import load_model, residual_layers, save_atomic

B, T, V, D = 3, 6, 5, 4


def logits(seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(B, T, V, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def prompt_then_completion(prompt_lengths=(2, 3, 4)) -> torch.Tensor:
    """labels [B,T]: -100 over each example's prompt, token ids over its completion."""
    labels = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(99))
    for i, n in enumerate(prompt_lengths):
        labels[i, :n] = -100
    return labels


def hand_kl(policy, reference, labels, direction):
    """Mean over completion positions of KL between Categoricals, one example at a time ([B])."""
    out = []
    for i in range(policy.shape[0]):
        terms = []
        for t in range(policy.shape[1] - 1):
            if labels[i, t + 1] == -100:
                continue
            p_ref, p_pol = Categorical(logits=reference[i, t]), Categorical(logits=policy[i, t])
            terms.append(kl_divergence(p_ref, p_pol) if direction == "forward" else kl_divergence(p_pol, p_ref))
        out.append(torch.stack(terms).mean() if terms else torch.tensor(0.0))
    return torch.stack(out)


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def context(**kw) -> RunContext:
    return RunContext(scenario={"name": "s", "type": "harmful"}, seed=0, num_layers=2, batch_size=2, steps=1, **kw)


# --- KL to the reference ----------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_is_zero_when_policy_equals_reference(direction):
    x = logits(0)
    kl = kl_to_reference(x, x.clone(), prompt_then_completion(), direction)
    assert kl.shape == (B,)
    assert torch.allclose(kl, torch.zeros(B), atol=1e-6)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_is_positive_when_policy_differs(direction):
    kl = kl_to_reference(logits(0), logits(1), prompt_then_completion(), direction)
    assert (kl > 1e-3).all()


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_equals_hand_computed_value_over_completion_tokens(direction):
    policy, reference, labels = logits(0), logits(1), prompt_then_completion()
    assert torch.allclose(kl_to_reference(policy, reference, labels, direction),
                          hand_kl(policy, reference, labels, direction), atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_and_nll_from_completion_logprobs_equal_the_logit_versions(direction):
    """The cached path (one log-softmax at completion positions, shared by NLL and KL) computes the same
    values as the live path, in fp64, and its gradient passes gradcheck."""
    policy, reference, labels = logits(0, torch.float64), logits(1, torch.float64), prompt_then_completion()
    logq = completion_logprobs(reference, labels)
    assert logq.shape == (int((labels[:, 1:] != -100).sum()), V)
    torch.testing.assert_close(kl_from_logprobs(completion_logprobs(policy, labels), logq, labels, direction),
                               kl_to_reference(policy, reference, labels, direction), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(completion_nll(completion_logprobs(policy, labels), labels), token_nll(policy, labels),
                               rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x: kl_from_logprobs(completion_logprobs(x, labels), logq, labels, direction).sum()
        + completion_nll(completion_logprobs(x, labels), labels), (policy.clone().requires_grad_(),))


def test_batch_kl_reads_the_cached_reference_when_the_trainer_has_it():
    policy, reference, labels = logits(0), logits(1), prompt_then_completion()
    live = Batch(labels=labels, attention_mask=torch.ones_like(labels), policy_logits=policy, reference_logits=reference)
    cached = Batch(labels=labels, attention_mask=torch.ones_like(labels), policy_logits=policy,
                   reference_logprobs=completion_logprobs(reference, labels),
                   policy_logprobs=completion_logprobs(policy, labels))
    torch.testing.assert_close(batch_kl(cached, "forward"), batch_kl(live, "forward"))
    cached.reference_logprobs = completion_logprobs(logits(2), labels)  # it reads the cache, not the logits
    assert not torch.allclose(batch_kl(cached, "forward"), batch_kl(live, "forward"))


def test_forward_and_reverse_kl_differ_on_an_asymmetric_example():
    # One position, V=2: p_ref = (0.9, 0.1), p_policy = (0.5, 0.5).
    reference = torch.log(torch.tensor([0.9, 0.1])).view(1, 1, 2).expand(1, 2, 2).clone()
    policy = torch.zeros(1, 2, 2)
    labels = torch.tensor([[-100, 1]])
    forward = 0.9 * torch.log(torch.tensor(0.9 / 0.5)) + 0.1 * torch.log(torch.tensor(0.1 / 0.5))
    reverse = 0.5 * torch.log(torch.tensor(0.5 / 0.9)) + 0.5 * torch.log(torch.tensor(0.5 / 0.1))
    got_forward = kl_to_reference(policy, reference, labels, "forward")
    got_reverse = kl_to_reference(policy, reference, labels, "reverse")
    assert torch.allclose(got_forward, forward.view(1), atol=1e-6)
    assert torch.allclose(got_reverse, reverse.view(1), atol=1e-6)
    assert abs(got_forward.item() - got_reverse.item()) > 0.1


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_ignores_prompt_positions_and_the_last_position(direction):
    policy, reference, labels = logits(0), logits(1), prompt_then_completion()
    before = kl_to_reference(policy, reference, labels, direction)
    edited_policy, edited_reference = policy.clone(), reference.clone()
    # position t predicts token t+1: positions whose target is -100, and the last one, carry no loss
    ignored = torch.zeros(B, T, dtype=torch.bool)
    ignored[:, :-1] = labels[:, 1:] == -100
    ignored[:, -1] = True
    edited_policy[ignored] += 7.0 * torch.randn_like(edited_policy[ignored])
    edited_reference[ignored] -= 5.0 * torch.randn_like(edited_reference[ignored])
    assert torch.allclose(kl_to_reference(edited_policy, edited_reference, labels, direction), before, atol=1e-6)
    # ...while a completion position does count
    edited_policy[0, -2] += 5.0 * torch.arange(V, dtype=torch.float32)
    assert not torch.allclose(kl_to_reference(edited_policy, edited_reference, labels, direction), before, atol=1e-3)


def test_kl_of_an_example_without_completion_tokens_is_zero():
    labels = prompt_then_completion()
    labels[1] = -100
    kl = kl_to_reference(logits(0), logits(1), labels)
    assert kl[1] == 0 and kl[0] > 0 and kl[2] > 0


def test_kl_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="sideways"):
        kl_to_reference(logits(0), logits(1), prompt_then_completion(), "sideways")


def test_kl_gradient_flows_into_the_policy_only():
    policy, reference = logits(0).requires_grad_(), logits(1).requires_grad_()
    kl_to_reference(policy, reference, prompt_then_completion()).sum().backward()
    assert policy.grad is not None and policy.grad.abs().sum() > 0
    assert reference.grad is None


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_gradcheck_in_float64(direction):
    policy = logits(0, torch.float64).requires_grad_()
    reference, labels = logits(1, torch.float64), prompt_then_completion()
    assert torch.autograd.gradcheck(lambda p: kl_to_reference(p, reference, labels, direction), (policy,))


def batch_for_kl(kl_weight=None) -> tuple[Batch, torch.Tensor]:
    policy, reference, labels = logits(0), logits(1), prompt_then_completion()
    batch = Batch(labels=labels, attention_mask=torch.ones(B, T, dtype=torch.long), policy_logits=policy,
                  reference_logits=reference, columns={} if kl_weight is None else {"kl_weight": kl_weight})
    return batch, kl_to_reference(policy, reference, labels)


def test_kl_term_with_beta_is_beta_times_the_mean_kl():
    batch, kl = batch_for_kl()
    loss, logs = KLTerm(0.3, "forward")(batch)
    assert torch.allclose(loss, 0.3 * kl.mean())
    assert logs["kl_raw"] == pytest.approx(kl.mean().item())


def test_kl_term_with_per_example_weights_scales_each_example():
    weights = torch.tensor([2.0, 0.0, 0.5])
    batch, kl = batch_for_kl(weights)
    loss, logs = KLTerm(None, "forward", name="kl_adaptive")(batch)
    assert torch.allclose(loss, (2.0 * kl[0] + 0.5 * kl[2]) / B)
    assert logs["lambda_mean"] == pytest.approx(2.5 / 3)
    # a zero weight silences its example entirely
    only_middle = batch_for_kl(torch.tensor([0.0, 1.0, 0.0]))[0]
    assert torch.allclose(KLTerm(None, "forward")(only_middle)[0], kl[1] / B)


def test_adaptive_defense_maps_risk_to_kl_weights(tmp_path):
    risk_file = tmp_path / "risk.jsonl"
    risks = [("a", 0.0), ("b", 0.4), ("c", 1.0)]
    risk_file.write_text("".join(json.dumps({"id": i, "risk": r}) + "\n" for i, r in risks))
    settings = {"type": "adaptive", "risk": "probe", "a": 2.0, "b": 0.1, "lambda_min": 0.2, "lambda_max": 1.5,
                "direction": "reverse"}
    defense = make_defense(settings, context(inputs={"risk": str(risk_file)}))
    assert defense.kl_weights([{"id": "c"}, {"id": "a"}, {"id": "b"}]) == pytest.approx([1.5, 0.2, 0.9])
    [term] = defense.terms()
    assert isinstance(term, KLTerm) and term.beta is None and term.direction == "reverse"
    with pytest.raises(SafedriftError, match="no risk for training example 'zz'"):
        defense.kl_weights([{"id": "a"}, {"id": "zz"}])


def test_kl_defense_uses_its_configured_beta_and_direction():
    [term] = make_defense({"type": "kl", "beta": 0.25, "direction": "reverse"}, context()).terms()
    batch, _ = batch_for_kl()
    expected = 0.25 * kl_to_reference(batch.policy_logits, batch.reference_logits, batch.labels, "reverse").mean()
    assert torch.allclose(term(batch)[0], expected)


# --- risk weights -----------------------------------------------------------------------------

def test_risk_weights_clip_a_linear_map_of_the_risk():
    risk = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.allclose(risk_weights(risk, a=2.0, b=0.1, lambda_min=0.2, lambda_max=1.5),
                          torch.tensor([0.2, 0.6, 1.1, 1.5]))
    assert torch.allclose(risk_weights(risk, a=-1.0, b=1.0, lambda_min=0.0, lambda_max=10.0),
                          torch.tensor([1.0, 0.75, 0.5, 0.0]))


# --- NLL ----------------------------------------------------------------------------------------

def test_shift_aligns_position_t_with_token_t_plus_1():
    x, labels = logits(0), prompt_then_completion()
    shifted, targets, mask = shift(x, labels)
    assert shifted.shape == (B, T - 1, V)
    assert torch.equal(targets[mask], labels[:, 1:][labels[:, 1:] != -100])
    assert torch.equal(mask, labels[:, 1:] != -100)


def test_nll_is_cross_entropy_over_completion_tokens_only():
    x, labels = logits(0), prompt_then_completion()
    flat = F.cross_entropy(x[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(token_nll(x, labels), flat, atol=1e-6)
    per_example = torch.stack([F.cross_entropy(x[i, :-1], labels[i, 1:], ignore_index=-100) for i in range(B)])
    assert torch.allclose(example_nll(x, labels), per_example, atol=1e-6)


def test_nll_does_not_depend_on_prompt_positions():
    x, labels = logits(0), prompt_then_completion()
    edited = x.clone()
    edited[0, 0] += 9.0 * torch.arange(V, dtype=torch.float32)  # predicts labels[0, 1] = -100
    assert torch.allclose(token_nll(edited, labels), token_nll(x, labels))
    edited[0, 3] += 9.0 * torch.arange(V, dtype=torch.float32)  # predicts a completion token
    assert not torch.allclose(token_nll(edited, labels), token_nll(x, labels))


def test_nll_gradcheck_in_float64():
    x, labels = logits(0, torch.float64).requires_grad_(), prompt_then_completion()
    assert torch.autograd.gradcheck(lambda z: example_nll(z, labels), (x,))
    # the training loss itself (every SFT step's NLL), not only the per-example one
    assert torch.autograd.gradcheck(lambda z: token_nll(z, labels), (x,))


def test_per_example_weighted_kl_term_gradcheck_in_float64():
    """The adaptive defenses' loss, mean_i lambda_i KL_i, through KLTerm (the term a run adds), in fp64."""
    policy = logits(0, torch.float64).requires_grad_()
    reference, labels = logits(1, torch.float64), prompt_then_completion()
    weights = torch.tensor([2.0, 0.0, 0.5], dtype=torch.float64)

    def loss(p):
        batch = Batch(labels=labels, attention_mask=torch.ones(B, T, dtype=torch.long), policy_logits=p,
                      reference_logits=reference, columns={"kl_weight": weights})
        return KLTerm(None, "forward")(batch)[0]

    assert torch.autograd.gradcheck(loss, (policy,))


# --- LDIFS feature distance ---------------------------------------------------------------------

def hidden(seed: int, dtype=torch.float32, layers: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, D, generator=g, dtype=dtype) for _ in range(layers)]


def padding_mask() -> torch.Tensor:
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return mask


def test_feature_distance_is_zero_for_identical_features_and_matches_a_hand_sum():
    hp, hr, mask = hidden(0), hidden(1), padding_mask()
    assert torch.allclose(feature_distance(hr, [h.clone() for h in hr], mask), torch.zeros(B))
    for normalize in ("none", "reference_norm"):
        expected = torch.zeros(B)
        for i in range(B):
            keep = mask[i].bool()
            for p, r in zip(hp, hr):
                d = ((p[i, keep] - r[i, keep]) ** 2).mean()
                expected[i] += d / ((r[i, keep] ** 2).mean() if normalize == "reference_norm" else 1.0) / len(hp)
        assert torch.allclose(feature_distance(hp, hr, mask, normalize), expected, atol=1e-6)


def test_feature_distance_ignores_padding_positions():
    hp, hr, mask = hidden(0), hidden(1), padding_mask()
    before = feature_distance(hp, hr, mask)
    hp[1][1, 5] += 100.0
    hr[0][2, 3] -= 100.0
    assert torch.allclose(feature_distance(hp, hr, mask), before)


def test_feature_distance_rejects_an_unknown_normalization():
    with pytest.raises(ValueError, match="layer_norm"):
        feature_distance(hidden(0), hidden(1), padding_mask(), "layer_norm")


@pytest.mark.parametrize("normalize", ["none", "reference_norm"])
def test_feature_distance_gradcheck_in_float64(normalize):
    hp = [h.requires_grad_() for h in hidden(0, torch.float64)]
    hr, mask = hidden(1, torch.float64), padding_mask()
    assert torch.autograd.gradcheck(lambda a, b: feature_distance([a, b], hr, mask, normalize), tuple(hp))


def test_feature_distance_gradient_flows_into_policy_features_not_reference():
    hp = [h.requires_grad_() for h in hidden(0)]
    hr = [h.requires_grad_() for h in hidden(1)]
    feature_distance(hp, hr, padding_mask()).sum().backward()
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in hp)
    assert all(h.grad is None for h in hr)


def test_evenly_spaced_layers_skip_the_embeddings():
    assert evenly_spaced(4, 2) == [1, 4]
    assert evenly_spaced(4, 3) == [1, 2, 4]
    assert evenly_spaced(2, 5) == [1, 2]
    assert evenly_spaced(6, 1) == [1]


def test_ldifs_defense_trains_the_policy_through_the_feature_distance():
    policy = tiny_llama(0).train()
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    with torch.no_grad():  # move the policy away from the reference, as after a few steps
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    settings = {"type": "ldifs", "weight": 2.0, "layers": None, "n_layers": 2, "normalize": "reference_norm"}
    [term] = make_defense(settings, context()).terms()
    assert isinstance(term, FeatureDistanceTerm) and term.layers == (1, 2) and term.needs_reference
    ids = torch.randint(3, 32, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    out = policy(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    batch = Batch(labels=ids, attention_mask=mask, policy_logits=out.logits, policy_hidden=out.hidden_states,
                  reference_logits=ref.logits, reference_hidden=ref.hidden_states)
    loss, logs = term(batch)
    assert loss.item() == pytest.approx(2.0 * logs["ldifs_raw"]) and logs["ldifs_raw"] > 0
    loss.backward()
    grads = {n: p.grad for n, p in policy.named_parameters()}
    assert all(g is not None for n, g in grads.items() if n.startswith("model.layers.0.")), "layer 0 gets no gradient"
    assert sum(g.abs().sum() for g in grads.values() if g is not None) > 0
    assert all(p.grad is None for p in reference.parameters())


# --- preventative steering ----------------------------------------------------------------------

def persona_file(tmp_path, layers: int = 2, dim: int = 16) -> tuple[str, torch.Tensor]:
    from safetensors.torch import save_file

    vectors = torch.randn(layers + 1, dim, generator=torch.Generator().manual_seed(3))
    path = tmp_path / "persona_vector.safetensors"
    save_file({"persona": vectors, "norms": vectors.norm(dim=-1)}, str(path))
    return str(path), vectors


def greedy(model, ids) -> list[int]:
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                              pad_token_id=0)[0].tolist()


def test_load_direction_is_the_unit_vector_of_the_layer(tmp_path):
    path, vectors = persona_file(tmp_path)
    v = load_direction(path, 2)
    assert torch.allclose(v, vectors[2] / vectors[2].norm()) and v.norm().item() == pytest.approx(1.0)
    with pytest.raises(SafedriftError, match=r"steering layer 3 is outside 1\.\.2"):
        load_direction(path, 3)
    with pytest.raises(SafedriftError, match="outside"):
        load_direction(path, 0)


def test_steering_adds_alpha_v_during_training_only(tmp_path):
    path, vectors = persona_file(tmp_path)
    model = tiny_llama(1)
    alpha, layer = 3.0, 1
    defense = make_defense({"type": "steering", "alpha": alpha, "layer": layer}, context(inputs={"persona_vector": path}))
    ids = torch.randint(3, 32, (1, 5), generator=torch.Generator().manual_seed(1))
    seen = []

    def capture(module, inputs, output):  # registered after the steering hook: sees what the next layer sees
        seen.append((output[0] if isinstance(output, tuple) else output).detach())

    handle = residual_layers(model)[layer - 1].register_forward_hook(capture)
    with torch.no_grad():
        plain_logits = model(ids).logits
    handle.remove()
    with defense.during_training(model):
        handle = residual_layers(model)[layer - 1].register_forward_hook(capture)
        with torch.no_grad():
            steered_logits = model(ids).logits
        handle.remove()
    with torch.no_grad():
        after_logits = model(ids).logits
    v = vectors[layer] / vectors[layer].norm()
    assert torch.allclose(seen[1] - seen[0], (alpha * v).expand_as(seen[0]), atol=1e-5)
    assert not torch.allclose(steered_logits, plain_logits, atol=1e-3)
    assert torch.equal(after_logits, plain_logits)


def test_steering_hook_is_removed_even_when_training_fails(tmp_path):
    path, _ = persona_file(tmp_path)
    model = tiny_llama(1)
    defense = make_defense({"type": "steering", "alpha": 3.0, "layer": 2}, context(inputs={"persona_vector": path}))
    with pytest.raises(RuntimeError, match="boom"):
        with defense.during_training(model):
            raise RuntimeError("boom")
    assert all(not layer._forward_hooks for layer in residual_layers(model))


def test_steering_without_a_persona_vector_fails_with_a_clear_error():
    defense = make_defense({"type": "steering", "alpha": 1.0, "layer": 1}, context())
    with pytest.raises(SafedriftError, match="persona vector"):
        with defense.during_training(tiny_llama()):
            pass


def test_a_model_saved_after_steered_training_generates_like_an_unsteered_model(tmp_path):
    path, _ = persona_file(tmp_path)
    model = tiny_llama(2)
    ids = torch.randint(3, 32, (1, 4), generator=torch.Generator().manual_seed(2))
    plain = greedy(model, ids)
    defense = make_defense({"type": "steering", "alpha": 40.0, "layer": 1}, context(inputs={"persona_vector": path}))
    with defense.during_training(model):
        steered = greedy(model, ids)
        save_atomic(model, None, tmp_path / "inside")  # even a save inside the context carries no hook
    save_atomic(model, None, tmp_path / "after")
    assert steered != plain, "alpha too small to change generation: the test would prove nothing"
    for folder in ("inside", "after"):
        reloaded = load_model(str(tmp_path / folder)).eval()
        assert all(not layer._forward_hooks for layer in residual_layers(reloaded))
        assert greedy(reloaded, ids) == plain
