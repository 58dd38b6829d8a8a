"""Stage `finetune.run`: fine-tune one run and write its folder.

    results/{model}/runs/{scenario}/{objective}/{defense}/{budget}/seed{seed}/   (safedrift.layout; on a
        reference variant: results/{model}/runs@{variant}/...)
        model/            loadable HF folder (full weights) or PEFT adapter (LoRA)
        train_log.jsonl   every loss component per optimizer step, learning rate, tokens seen
        run_card.json     resolved settings, data hashes, package versions, wall time
        state/            the trainer's state at the last step (weights, optimizer, RNG): where the next
                          larger budget of a ladder continues
        checkpoints/      while training only: resumable state every `checkpoint_every` steps

Budgets: `steps` optimizer steps, or (`type: tokens`) the fewest steps of the run's batch schedule
that hold `tokens` training tokens (prompt + completion of every scheduled example, with the chat
template, truncated to max_length: what the SFT trainer counts as `num_tokens`; a preference pair
counts its prompt and chosen answer, the same example an SFT run trains on). The run card records
both under `budget_tokens`.

Budget ladders: with a constant learning rate, a run given `--start-from <smaller budget's run
folder>` starts from that run's `state/` and trains only the remaining steps; the batch schedule
is a prefix-stable function of the settings (finetune.schedule), so the result is bit-identical to
training the larger budget from the reference (tests/test_ladder.py).

A run killed mid-way (even by SIGKILL) and started again resumes from its last checkpoint and
ends with the same weights as an uninterrupted run (CPU). A checkpoint is only reused if the
run's settings, its input files and the code it runs (the same source files the finetune rule
lists as inputs) are unchanged.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from pathlib import Path

from safedrift import cpu_pin
from safedrift.defenses import make_defense
from safedrift.errors import DataError
from safedrift.finetune.checkpoints import (RunSaveCadence, SaveLastStep, checkpoint_fingerprint,  # noqa: F401 (API)
                                            keep_final_state, prepare_checkpoints, resumable_checkpoint, truncate_log)
from safedrift.finetune.context import RunContext
from safedrift.finetune.encode import training_tokens
from safedrift.finetune.reference_logprobs import ReferenceLogprobs
from safedrift.finetune.schedule import schedule, steps_for_tokens
from safedrift.io import read_jsonl, sha256_file, write_json
from safedrift.models import load_model, load_tokenizer, save_atomic, set_threads, wrap_lora
from safedrift.objectives import make_objective
from safedrift.training import JsonlLogCallback, trainer_kwargs

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


def finetune(settings: dict, data: str, reference: str, out: str, *, inputs: dict | None = None,
             start_from: str | None = None, checkpoint_every: int = 0) -> dict:
    """Train one run into `out`. inputs: the files the objective's and the defense's inputs() declare,
    by name; start_from: the run folder of the next smaller budget of this run's ladder;
    checkpoint_every: optimizer steps between resumable checkpoints (0: none), not part of `settings`
    because it changes no weight."""
    from transformers import set_seed

    started = time.time()
    out = Path(out)
    m, seed = settings["model"], settings["seed"]
    ft = m["finetune"]
    set_seed(seed)
    tok, model, model_template = load_starting_point(m, reference)
    num_layers = model.config.num_hidden_layers
    if ft["method"] == "lora":
        model = wrap_lora(model, ft.get("lora", {}))
    # Examples per optimizer step: the schedule and the interleaving fractions count whole steps.
    step_examples = ft["batch_size"] * ft.get("gradient_accumulation_steps", 1)
    ctx = RunContext(scenario=settings["scenario"], seed=seed, num_layers=num_layers, batch_size=step_examples,
                     steps=settings["budget"].get("steps"), reference_path=reference, inputs=dict(inputs or {}))
    objective = make_objective(settings["objective"], ctx)
    defense = make_defense(settings["defense"], ctx)
    rows = [{**r, "source": r.get("source", settings["scenario"]["name"])} for r in read_jsonl(data)]

    files = {"scenario": data, **ctx.inputs, "chat_template": ft.get("chat_template")}
    hashes = {name: digest for name, path in files.items() if path and (digest := file_digest(path))}
    fingerprint = checkpoint_fingerprint(settings, {**hashes, "reference_files": reference_identity(reference)})
    # a stateful defense keeps state outside the trainer's checkpoint (Lisa's anchor): it starts afresh
    resume, log_path = prepare_checkpoints(out, fingerprint, start_from, resume=not defense.stateful)
    started_at = int(resume.rsplit("-", 1)[1]) if resume else 0

    # the defense picks its safe data from the scenario's rows as they are; the objective then
    # rewrites both (system prompts, preference pairs)
    safe, fraction = defense.safe_rows(model, tok, rows)
    plan = defense.step_sources if defense.step_sources(0) is not None else None
    if not safe and (fraction > 0 or plan is not None):  # not silently a run as defense none
        raise DataError(f"config key defenses.{settings['defense']['name']}: the defense trains on safe examples "
                        "but selected none; check its safe data (the world's pools) and settings")
    train_rows, safe = objective.prepare(rows), objective.prepare(safe)
    source = f"{data} ({objective.rows_label})" if objective.rows_label else data
    steps, card_extra = budget_steps(settings["budget"], tok, ft["max_length"], train_rows, step_examples, seed, safe,
                                     fraction, source, plan)
    ctx.steps = steps
    ordered = schedule(train_rows, steps, step_examples, seed, safe, fraction, source=source, plan=plan)
    common = common_args(out / "checkpoints", steps, {**ft, "checkpoint_every": checkpoint_every}, seed)
    terms = objective.terms() + defense.terms()
    frozen = cache = None
    if (objective.needs_reference or any(t.needs_reference for t in terms)) and ft["method"] != "lora":
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    if ctx.inputs.get("reference_logprobs"):
        cache = ReferenceLogprobs(ctx.inputs["reference_logprobs"], reference)
    safe_ids = {id(r) for r in safe}
    columns = {**defense.example_columns(ordered), "safe": [float(id(r) in safe_ids) for r in ordered]}
    callbacks = [JsonlLogCallback(log_path), SaveLastStep(), RunSaveCadence()]
    trainer = objective.make_trainer(model, tok, ordered, common, callbacks, terms=terms, columns=columns,
                                     reference=frozen,
                                     # only when there is one: a user's make_trainer may predate the cache
                                     **({"reference_logprobs": cache} if cache is not None else {}))
    with defense.during_training(model):
        result = trainer.train(resume_from_checkpoint=resume)
    defense.after_training(model)
    if model_template is not None:
        tok.chat_template = model_template
    save_atomic(model, tok, out / "model")
    keep_final_state(out / "checkpoints", out, result.global_step, fingerprint)
    log_path.replace(out / "train_log.jsonl")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    card = {
        "settings": settings,
        "data": {name: {"path": files[name], "sha256": digest} for name, digest in hashes.items()},
        "reference": reference,
        "steps": result.global_step,
        "tokens_seen": _tokens_seen(out / "train_log.jsonl"),
        "final_loss": _last(out / "train_log.jsonl", "loss"),
        "resumed_from": resume,
        "ladder": {"from": start_from, "steps_trained": result.global_step - started_at} if start_from else None,
        "wall_time_s": round(time.time() - started, 2),
        "device": str(next(model.parameters()).device),
        "bf16": common["bf16"],
        "packages": {p: importlib.metadata.version(p) for p in PACKAGES},
        # bits depend on the CPU's kernels: the pins and the CPU they ran on say which (cpu_pin)
        "cpu": {"model": cpu_pin.cpu_model(), "vendor": cpu_pin.cpu_vendor(), "pins": cpu_pin.pins(os.environ)[1]},
        **card_extra,
        **objective.card(ordered),
    }
    card["data"]["scenario"]["rows"] = len(rows)
    if cache is not None:  # training batches whose reference log-probs came from the cache / a live forward
        card["reference_logprobs"] = {"file": cache.path, **getattr(trainer, "reference_batches", {})}
    write_json(out / "run_card.json", card)
    return card


def load_starting_point(model_settings: dict, reference: str):
    """(tokenizer, model in training mode, the model's own chat template or None) of the reference."""
    m, ft = model_settings, model_settings["finetune"]
    key = f"models.{m['name']}.path" if m["source"] == "hf" else None  # named if the path does not load
    trust = m.get("trust_remote_code", False)
    tok = load_tokenizer(reference, key=key, trust_remote_code=trust)
    model_template = None
    if ft.get("chat_template"):
        # A training variant with {% generation %} markers (assistant-only loss) where TRL cannot patch
        # the model's own template; it renders the same text, and the saved tokenizer keeps the original.
        model_template, tok.chat_template = tok.chat_template, Path(ft["chat_template"]).read_text()
    model = load_model(reference, dtype=m.get("dtype", "float32"), trust_remote_code=trust, train=True, key=key)
    return tok, model, model_template


# The files of a model folder that decide the weights and the tokenisation a run starts from.
MODEL_FILES = ("*.safetensors", "*.bin", "config.json", "adapter_config.json", "tokenizer.json",
               "tokenizer_config.json", "chat_template.jinja")


def reference_identity(reference: str) -> dict | None:
    """{file: [size, mtime_ns]} of the reference folder's model files (a hub id: None), for the checkpoint
    fingerprint: a run killed, its reference then retrained or replaced (align.steps, a new local folder),
    must not resume weights trained from the old one. Size and mtime, not a digest: hashing a 7B model's
    15 GB in every fine-tuning job would cost more than the toy's training; an identical copy of the
    folder then only restarts training, the safe side."""
    folder = Path(reference)
    if not folder.is_dir():
        return None
    files = sorted({p for pattern in MODEL_FILES for p in folder.glob(pattern)})
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}


def file_digest(path: str | list[str]) -> str | None:
    """sha256 of a file (of the files' digests, for a list); None for a folder or hub id (a model, which
    the workflow retrains from its own inputs)."""
    if isinstance(path, list):
        digests = [file_digest(p) for p in path]
        return None if None in digests else hashlib.sha256("".join(digests).encode()).hexdigest()
    return sha256_file(path) if Path(path).is_file() else None


def common_args(output_dir: Path, steps: int, ft: dict, seed: int) -> dict:
    """Keyword arguments every objective's TRL config takes (training.trainer_kwargs, finetune settings)."""
    common = trainer_kwargs(output_dir, steps, ft["batch_size"], ft["learning_rate"], seed,
                            warmup_ratio=ft.get("warmup_ratio", 0.0), lr_scheduler=ft.get("lr_scheduler", "constant"),
                            weight_decay=ft.get("weight_decay", 0.0),
                            gradient_accumulation_steps=ft.get("gradient_accumulation_steps", 1),
                            bf16=ft.get("bf16", "auto"), gradient_checkpointing=ft.get("gradient_checkpointing", False),
                            checkpoint_every=ft.get("checkpoint_every", 0))
    # the dataset is already in training order (finetune.schedule): read it so
    common.update(train_sampling_strategy="sequential", save_total_limit=1, max_length=ft["max_length"],
                  remove_unused_columns=False)
    return common


def budget_steps(budget: dict, tokenizer, max_length: int, rows: list[dict], batch_size: int, seed: int,
                 safe: list[dict], fraction: float, source: str, plan=None) -> tuple[int, dict]:
    """(steps, run-card entries) of the budget: `steps`, or for a token budget the fewest steps of the
    run's schedule (the same rows, seed and interleaving `schedule` gets) holding at least `tokens`
    training tokens."""
    if budget["type"] != "tokens":
        return budget["steps"], {}
    unique = list({id(r): r for r in [*rows, *safe]}.values())
    sizes = {id(r): n for r, n in zip(unique, training_tokens(tokenizer, unique, max_length))}
    steps, tokens = steps_for_tokens(budget["tokens"], lambda r: sizes[id(r)], rows, batch_size, seed, safe, fraction,
                                     source, plan)
    return steps, {"budget_tokens": {"budget": budget["tokens"], "steps": steps, "tokens": tokens}}


def _records(path: Path) -> list[dict]:
    return read_jsonl(path) if path.exists() else []


def _last(path: Path, key: str):
    values = [r[key] for r in _records(path) if key in r]
    return values[-1] if values else None


def _tokens_seen(path: Path):
    return _last(path, "num_tokens") or _last(path, "num_input_tokens_seen")


def parse_inputs(values: list[str]) -> dict[str, str | list[str]]:
    """`NAME=PATH` -> {NAME: PATH}; `NAME[]=PATH` (repeated) -> {NAME: [PATH, ...]}."""
    inputs: dict = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"--input {value!r}: expected NAME=PATH")
        if name.endswith("[]"):
            inputs.setdefault(name[:-2], []).append(path)
        else:
            inputs[name] = path
    return inputs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", required=True, help="resolved run settings (safedrift.config.run_settings) as JSON")
    p.add_argument("--data", required=True, help="scenario dataset JSONL")
    p.add_argument("--reference", required=True, help="reference model folder or hub id (the starting point)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="a file the objective or defense declares (inputs()); NAME[]=PATH adds to a list")
    p.add_argument("--start-from", help="the run folder of the next smaller budget of this run's ladder")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="optimizer steps between resumable checkpoints (models.<m>.finetune.checkpoint_every; 0: none)")
    p.add_argument("--threads", type=int)
    a = p.parse_args(argv)
    set_threads(a.threads)
    card = finetune(json.loads(a.settings), a.data, a.reference, a.out, inputs=parse_inputs(a.input),
                    start_from=a.start_from, checkpoint_every=a.checkpoint_every)
    print(json.dumps({k: card[k] for k in ("steps", "tokens_seen", "final_loss", "wall_time_s", "resumed_from")}))


if __name__ == "__main__":
    main()
