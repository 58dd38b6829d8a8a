"""Trainer settings shared by every training stage (pretraining, alignment, fine-tuning).

TRL's configs default to bf16, gradient checkpointing and a fused loss without logits; the
pipeline sets each of these explicitly so a run means the same thing on a laptop and a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from safedrift.models import use_bf16


def trainer_kwargs(output_dir, steps: int, batch_size: int, learning_rate: float, seed: int, *,
                   warmup_ratio: float = 0.0, lr_scheduler: str = "cosine", weight_decay: float = 0.0,
                   gradient_accumulation_steps: int = 1, bf16="auto", gradient_checkpointing: bool = False,
                   checkpoint_every: int = 0) -> dict:
    """Keyword arguments common to SFTConfig, DPOConfig and ORPOConfig."""
    bf16 = use_bf16(bf16)
    return dict(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=learning_rate,
        lr_scheduler_type=lr_scheduler,
        warmup_steps=int(round(warmup_ratio * steps)),
        weight_decay=weight_decay,
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        fp16=False,
        # transformers 5.23 renamed the option (the old name warns, and goes in v6); TRL's configs default it on
        activation_checkpointing=gradient_checkpointing,
        logging_steps=1,
        save_strategy="steps" if checkpoint_every else "no",
        save_steps=checkpoint_every or 500,
        save_only_model=False,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
        use_cpu=not __import__("torch").cuda.is_available(),
    )


class JsonlLogCallback:
    """Appends every log record (one per optimizer step) to a JSONL file."""

    def __new__(cls, path):
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def __init__(self, path):
                self.path = Path(path)
                self.path.parent.mkdir(parents=True, exist_ok=True)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    record = {"step": state.global_step, **{k: _num(v) for k, v in logs.items()}}
                    with open(self.path, "a") as f:
                        f.write(json.dumps(record, sort_keys=True) + "\n")
                    if state.global_step % 50 == 0 or state.global_step == state.max_steps:
                        print(f"step {state.global_step}/{state.max_steps} loss {record['loss']:.4f}", flush=True)

        return _Callback(path)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v

