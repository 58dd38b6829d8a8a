"""A run's checkpoints: which may be resumed (checkpoint_fingerprint), and budget ladders (a larger
budget starts from the smaller one's final state). See finetune.run."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from safedrift.errors import DataError
from safedrift.finetune.schedule import ladder_eligible
from safedrift.io import canonical_json, json_line, read_json
from safedrift.pipeline import finetune_modules, source_fingerprint

FINGERPRINT = "fingerprint"


def checkpoint_fingerprint(settings: dict, input_hashes: dict) -> str:
    """What a checkpoint is made with: the run's settings, its input files (name -> sha256) and every
    safedrift source file the run can execute, including modules imported only once training starts
    (the SFT trainer). A checkpoint resumes only under the same three."""
    code = source_fingerprint(*finetune_modules(settings["objective"]["type"], settings["defense"]["type"]))
    if ladder_eligible(settings["model"]["finetune"]):
        # every budget of a ladder trains the same steps: a state of one is a checkpoint of the others
        settings = {k: v for k, v in settings.items() if k != "budget"}
    return hashlib.sha256((canonical_json(settings) + canonical_json(input_hashes) + code).encode()).hexdigest()


class SaveLastStep:
    """Asks the Trainer for a checkpoint at the last step, whatever `save_steps` says: the run's
    final state, which the next budget of a ladder continues from."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= state.max_steps:
                    control.should_save = True

        return _Callback()


class RunSaveCadence:
    """Makes a resumed run (a checkpoint, or the state a ladder rung continues) save every
    `checkpoint_every` steps of its own: the Trainer keeps the `save_steps` stored in the state it
    loads, and the cadence is not part of a run's settings (a state made under another cadence is
    resumed as it is)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):  # after the state is loaded
                state.save_steps = args.save_steps

        return _Callback()


def resumable_checkpoint(ckpt_dir: Path, fingerprint: str) -> str | None:
    """The newest checkpoint made with the same fingerprint (checkpoint_fingerprint), else None (stale
    ones are deleted)."""
    stamp = ckpt_dir / "fingerprint"
    if ckpt_dir.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    done = [p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def continue_ladder(previous: Path, ckpt_dir: Path, log_path: Path, fingerprint: str) -> str:
    """Seed this run's checkpoints with the smaller budget's final state and its step log; returns
    the checkpoint to resume from."""
    stamp = previous / "state" / FINGERPRINT
    if not stamp.exists() or stamp.read_text() != fingerprint:
        raise DataError(f"{previous}/state was trained with other settings, inputs or code than this run; "
                        "rerun the smaller budget first (snakemake does this when its inputs changed)")
    step = read_json(previous / "state" / "trainer_state.json")["global_step"]
    target = ckpt_dir / f"checkpoint-{step}"
    shutil.copytree(previous / "state", target, ignore=shutil.ignore_patterns(FINGERPRINT))
    shutil.copyfile(previous / "train_log.jsonl", log_path)
    truncate_log(log_path, step)
    return str(target)


def keep_final_state(ckpt_dir: Path, out: Path, step: int, fingerprint: str) -> None:
    """Move the checkpoint of the last step to out/state (the next rung of a ladder starts there)."""
    final = ckpt_dir / f"checkpoint-{step}"
    tmp = out / "state.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    final.rename(tmp)
    (tmp / FINGERPRINT).write_text(fingerprint)
    shutil.rmtree(out / "state", ignore_errors=True)
    tmp.rename(out / "state")


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the log records of steps a resumed run will not replay. A last line that is not JSON
    was being written when the run was killed: it is dropped (a malformed earlier line is a DataError)."""
    if path.exists():
        lines = path.read_text().splitlines()
        if lines:
            try:
                json.loads(lines[-1])
            except json.JSONDecodeError:
                lines.pop()
        records = [(line, json_line(path, n, line)) for n, line in enumerate(lines, 1) if line.strip()]
        path.write_text("".join(line + "\n" for line, record in records if record["step"] <= last_step))


def prepare_checkpoints(out: Path, fingerprint: str, start_from: str | None,
                        resume: bool = True) -> tuple[str | None, Path]:
    """(the checkpoint to resume from or None, the step log being written): this run's own checkpoint
    made with the same fingerprint (unless `resume` is False), else the smaller budget's final state (a
    ladder), else a fresh log."""
    if not resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    resume = resumable_checkpoint(out / "checkpoints", fingerprint)
    log_path = out / "train_log.partial.jsonl"
    if resume:
        truncate_log(log_path, int(resume.rsplit("-", 1)[1]))
    elif log_path.exists():
        log_path.unlink()
    if start_from and not resume:
        resume = continue_ladder(Path(start_from), out / "checkpoints", log_path, fingerprint)
    return resume, log_path
