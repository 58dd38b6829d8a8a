"""What objectives and defenses may look at besides their own settings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunContext:
    scenario: dict  # resolved scenario variant (name, type, ...)
    seed: int
    num_layers: int  # decoder layers of the model
    batch_size: int  # examples per optimizer step
    steps: int | None  # optimizer steps (known once a token budget is counted)
    reference_path: str | None = None  # the reference model's folder or hub id (the starting point)
    # the files the objective's and the defense's inputs() declared, by the same names
    inputs: dict[str, str | list[str]] = field(default_factory=dict)
