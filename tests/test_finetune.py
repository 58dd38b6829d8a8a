"""Fine-tuning runs: a run killed with SIGKILL resumes from its last checkpoint and ends with the
weights of an uninterrupted run; the same settings and seed give identical weights (CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import ROOT
from safedrift.config import run_settings

STEPS, CHECKPOINT_EVERY = 8, 2


@pytest.fixture(scope="module")
def run_inputs(smoke):
    smoke.run("results/toy/data/harmful.jsonl")
    config = yaml.safe_load((smoke.path / "configs/smoke.yaml").read_text())
    settings = run_settings(config, "toy", "harmful", "sft", "kl", "large", 0)
    settings["budget"]["steps"] = STEPS
    return smoke.path, settings


def finetune_cmd(root, settings, out):
    return [sys.executable, "-m", "safedrift", "finetune.run", "--settings", json.dumps(settings),
            "--data", str(root / "results/toy/data/harmful.jsonl"), "--reference", str(root / "results/toy/reference"),
            "--out", str(out), "--checkpoint-every", str(CHECKPOINT_EVERY), "--threads", "1"]


def weights(out):
    return load_file(str(out / "model/model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def kill_after_first_checkpoint(cmd, out, env) -> None:
    """Start a run and SIGKILL it once its first checkpoint is complete."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, "the run finished before it could be killed; lower CHECKPOINT_EVERY"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists()


def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(run_inputs, tmp_path):
    root, settings = run_inputs
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    whole = tmp_path / "whole"
    subprocess.run(finetune_cmd(root, settings, whole), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    kill_after_first_checkpoint(finetune_cmd(root, settings, killed), killed, env)

    resumed = subprocess.run(finetune_cmd(root, settings, killed), check=True, env=env, capture_output=True,
                             text=True)
    card = json.loads((killed / "run_card.json").read_text())
    assert card["resumed_from"] is not None, resumed.stdout
    assert_same_weights(whole, killed)
    steps = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))


def test_changed_settings_do_not_resume_a_stale_checkpoint(run_inputs, tmp_path):
    root, settings = run_inputs
    out = tmp_path / "run"
    subprocess.run(finetune_cmd(root, settings, out), check=True, capture_output=True)
    changed = json.loads(json.dumps(settings))
    changed["defense"]["beta"] = 0.01
    (out / "model").rename(tmp_path / "first_model")
    subprocess.run(finetune_cmd(root, changed, out), check=True, capture_output=True)
    assert json.loads((out / "run_card.json").read_text())["resumed_from"] is None


def test_code_edit_after_a_kill_starts_afresh(run_inputs, tmp_path):
    """A checkpoint is resumed only by the code that made it, including code a run imports after
    it has looked for a checkpoint (the SFT trainer that composes the loss terms)."""
    root, settings = run_inputs
    edited = "finetune/trainer.py"
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(src)}
    out = tmp_path / "run"
    kill_after_first_checkpoint(finetune_cmd(root, settings, out), out, env)
    with open(src / "safedrift" / edited, "a") as f:
        f.write("\n# edited after the run was killed\n")
    rerun = subprocess.run(finetune_cmd(root, settings, out), check=True, env=env, capture_output=True, text=True)
    card = json.loads((out / "run_card.json").read_text())
    assert card["resumed_from"] is None, f"resumed {card['resumed_from']} after {edited} changed: {rerun.stdout}"
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))


def test_checkpoint_fingerprint_covers_the_rule_code_inputs_and_input_files(tmp_path, monkeypatch):
    """The fingerprint changes with each file among the finetune rule's code inputs (the SFT trainer
    and loss terms too), with the run's input files, and with no other file."""
    from safedrift import pipeline
    from safedrift.finetune.run import checkpoint_fingerprint

    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pipeline, "SRC_DIR", src)
    settings = run_settings(yaml.safe_load((ROOT / "configs/smoke.yaml").read_text()), "toy", "harmful", "sft", "kl",
                            "large", 0)
    hashes = {"scenario": "0" * 64}
    base = checkpoint_fingerprint(settings, hashes)

    def after_editing(name):
        path = src / "safedrift" / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        try:
            return checkpoint_fingerprint(settings, hashes)
        finally:
            path.write_bytes(original)

    for name in ("finetune/trainer.py", "finetune/run.py", "losses/nll.py", "losses/kl.py", "defenses/kl.py",
                 "objectives/sft.py"):
        assert after_editing(name) != base, f"{name} changed and an old checkpoint would resume"
    for name in ("report/figures.py", "objectives/dpo.py", "defenses/steering.py"):
        assert after_editing(name) == base, f"{name} is not code of this run, yet it restarts it"
    assert checkpoint_fingerprint(settings, {"scenario": "1" * 64}) != base
    assert checkpoint_fingerprint(settings, {**hashes, "reference_responses": "0" * 64}) != base


def test_a_reference_replaced_after_a_kill_is_not_resumed_from(run_inputs, tmp_path):
    """Killed, then the reference retrained in place (align.steps changed, a new local folder): the rerun
    started from the old reference's checkpoint, since the fingerprint held the settings, input files
    and code but not the weights the run starts from."""
    root, settings = run_inputs
    reference = tmp_path / "reference"
    shutil.copytree(root / "results/toy/reference", reference, ignore=shutil.ignore_patterns("eval", "card.json"))
    cmd = finetune_cmd(root, settings, tmp_path / "run")
    cmd[cmd.index("--reference") + 1] = str(reference)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    kill_after_first_checkpoint(cmd, tmp_path / "run", env)
    from safetensors.torch import save_file

    retrained = {k: v + 0.01 for k, v in load_file(str(reference / "model.safetensors")).items()}
    time.sleep(0.01)
    save_file(retrained, str(reference / "model.safetensors"), metadata={"format": "pt"})
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    assert json.loads((tmp_path / "run/run_card.json").read_text())["resumed_from"] is None


def test_a_resumed_run_saves_at_its_own_checkpoint_cadence(tmp_path):
    """checkpoint_every is not part of a run's settings, so a checkpoint (or the state a ladder rung
    continues) made under one cadence is resumed under another; the Trainer keeps the cadence stored
    in the loaded state unless the callback restores the run's own."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from safedrift.finetune.checkpoints import RunSaveCadence

    args = TrainingArguments(output_dir=str(tmp_path), save_strategy="steps", save_steps=3, report_to=[])
    state = TrainerState(save_steps=20, global_step=40, max_steps=80)  # as loaded from an older state
    RunSaveCadence().on_train_begin(args, state, TrainerControl())
    assert state.save_steps == 3
