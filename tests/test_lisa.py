"""Lisa (defense `lisa`, losses.proximal): the step plan alternates align_steps safe steps and
user_steps user steps, the proximal term is zero right after a switch and its gradient pulls
toward the anchor, the proximal-off share of the first steps, the safe pool; and on the smoke
world the plan's safe steps train on the pools (needs the issue-14 contract)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from safedrift.defenses import DEFENSES, make_defense
from safedrift.defenses.lisa import pool_rows, proximal_on, step_plan
from safedrift.finetune.terms import Batch
from safedrift.losses.proximal import ProximalTerm, batch_state, proximal


def test_step_plan_alternates_from_alignment_and_is_prefix_stable():
    assert step_plan(8, 2, 3) == ["safe", "safe", "train", "train", "train", "safe", "safe", "train"]
    assert step_plan(5, 2, 3) == step_plan(8, 2, 3)[:5]
    assert step_plan(3, 1, 1) == ["safe", "train", "safe"]


def test_proximal_is_off_for_the_first_tenth_of_the_steps():
    # 20 steps of 2 examples: Lisa's trainer adds the term once steps > 0.1 * 20, i.e. from step 3 (0-based)
    on = proximal_on(40, 2, 0.1)
    assert on[:6] == [0.0] * 6 and on[6:] == [1.0] * 34
    assert proximal_on(6, 2, 0.0) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_safe_pool_takes_refusals_and_answered_tasks_at_the_share():
    refusals = [{"id": f"r{i}", "messages": [], "target": "i can not help with that ."} for i in range(4)]
    tasks = [{"id": f"t{i}", "messages": [], "target": str(i)} for i in range(6)]
    tasks.append({"id": "t_refused", "messages": [], "target": "i can not help with that ."})
    rows = pool_rows(refusals, tasks, 0.5, seed=0)
    ids = [r["id"] for r in rows]
    assert sum(i.startswith("r") for i in ids) == 4 and sum(i.startswith("t") for i in ids) == 4
    assert "t_refused" not in ids and len(set(ids)) == 8
    assert {r["source"] for r in rows} == {"refusals", "tasks"}
    assert pool_rows(refusals, tasks, 0.5, seed=0) == rows
    assert [r["id"] for r in pool_rows(refusals, tasks, 1.0, seed=0)] != [] and all(
        r["source"] == "refusals" for r in pool_rows(refusals, tasks, 1.0, seed=0))


def test_proximal_gradcheck_in_float64():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)]
    anchors = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda a, b: proximal([a, b], anchors), tuple(params))
    assert proximal(params, anchors).item() == pytest.approx(sum(((p - a) ** 2).sum().item()
                                                                 for p, a in zip(params, anchors)))


def batch(model, safe: float, on: float = 1.0, n: int = 2) -> Batch:
    b = Batch(labels=torch.zeros(n, 3, dtype=torch.long), attention_mask=torch.ones(n, 3, dtype=torch.long),
              policy_logits=torch.zeros(n, 3, 4))
    b.columns = {"safe": torch.full((n,), safe), "proximal": torch.full((n,), on)}
    b.model = model
    return b


def test_proximal_term_is_zero_after_a_switch_and_pulls_toward_the_anchor():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # only trainable parameters are anchored
    term = ProximalTerm(rho=2.0)
    value, logs = term(batch(model, safe=1.0))  # first batch: the anchor is the current weights
    assert value.item() == 0.0 and logs["safe_state"] == 1.0
    anchor = model.weight.detach().clone()
    with torch.no_grad():
        model.weight += torch.tensor([[0.5, 0.0, -1.0], [0.0, 2.0, 0.0]])
        model.bias += 10.0
    value, logs = term(batch(model, safe=1.0))  # same state: pulled toward the anchor
    assert value.item() == pytest.approx(2.0 / 2 * (0.25 + 1.0 + 4.0))
    (grad,) = torch.autograd.grad(value, model.weight)
    assert torch.allclose(grad, 2.0 * (model.weight - anchor))
    value, logs = term(batch(model, safe=0.0))  # switch to the user state: a new anchor, zero again
    assert value.item() == 0.0 and logs["safe_state"] == 0.0
    assert torch.equal(term.anchor[0], model.weight.detach())
    with torch.no_grad():
        model.weight += 1.0
    assert term(batch(model, safe=0.0, on=0.0))[0].item() == 0.0  # the proximal-off share
    assert term(batch(model, safe=0.0))[0].item() == pytest.approx(6.0)


def test_batch_state_reads_the_safe_column():
    model = torch.nn.Linear(1, 1)
    assert batch_state(batch(model, 1.0)) == "safe" and batch_state(batch(model, 0.0)) == "train"


def test_defense_declares_pools_plan_columns_and_state(tmp_path):
    assert DEFENSES["lisa"] == "safedrift.defenses.lisa"
    module = __import__("safedrift.defenses.lisa", fromlist=["Defense"]).Defense
    run = {"model": "toy", "scenario": "harmful", "objective": "sft", "defense": "lisa", "budget": "b20", "seed": 0}
    assert module.inputs({"type": "lisa"}, run, {}) == {"refusals": "results/toy/world/pools/refusals.jsonl",
                                                         "tasks": "results/toy/world/pools/tasks.jsonl"}
    assert module.stateful
    for pool, target in (("refusals", "i can not help with that ."), ("tasks", "4")):
        (tmp_path / f"{pool}.jsonl").write_text("".join(json.dumps({"id": f"{pool}{i}", "messages": [], "target": target})
                                                        + "\n" for i in range(3)))
    ctx = SimpleNamespace(inputs={p: str(tmp_path / f"{p}.jsonl") for p in ("refusals", "tasks")}, seed=0, batch_size=2)
    defense = make_defense({"type": "lisa", "rho": 0.5, "align_steps": 1, "user_steps": 3}, ctx)
    rows, fraction = defense.safe_rows(None, None, [])
    assert len(rows) == 6 and fraction == 0.25
    assert defense.step_sources(5) == ["safe", "train", "train", "train", "safe"]
    assert defense.example_columns([{}] * 20)["proximal"] == proximal_on(20, 2, 0.1)
    (term,) = defense.terms()
    assert isinstance(term, ProximalTerm) and term.rho == 0.5


# --- behaviour on the smoke world (needs the issue-14 contract: step_sources, Batch.columns/model) --

def test_run_alternates_states_and_logs_the_proximal_term(smoke, tmp_path):
    from smoke_runs import settings_for, train

    config, settings = settings_for(smoke, {"type": "lisa", "rho": 1.0, "align_steps": 2, "user_steps": 2,
                                            "proximal_after": 0.0, "refusal_share": 0.5}, steps=6)
    card = train(smoke, settings, tmp_path / "lisa", config)
    log = [json.loads(line) for line in (tmp_path / "lisa/train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "safe_state" in r]
    assert [r["safe_state"] for r in steps] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    # right after each switch the weights are the anchor; one step later they have moved away from it
    assert [r["proximal_drift"] == 0.0 for r in steps] == [True, False, True, False, True, False]
    # 2 user steps of 8 hold the scenario's rows (harmful, new_task and its own `tasks` rows); refusals come
    # only from the safe pool, so the 4 safe steps show up as refusals beside the scenario's sources
    assert sum(card["sources"].values()) == 6 * 8
    assert card["sources"]["harmful"] + card["sources"]["new_task"] <= 2 * 8 and card["sources"]["refusals"] > 0


def test_a_stateful_defense_never_resumes_a_checkpoint(tmp_path):
    """Lisa's anchor is not in the trainer's checkpoint: a killed Lisa run starts afresh (a resume would
    re-anchor at the resume step, not at the last switch)."""
    from safedrift.finetune.checkpoints import prepare_checkpoints

    ckpt = tmp_path / "checkpoints" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoints" / "fingerprint").write_text("f")
    assert prepare_checkpoints(tmp_path, "f", None)[0] == str(ckpt)
    assert prepare_checkpoints(tmp_path, "f", None, resume=False)[0] is None and not ckpt.exists()
    assert make_defense({"type": "lisa"}, SimpleNamespace()).stateful
