"""Stage `finetune.reference_logprobs`: the reference's log-probabilities on a scenario's completion tokens,
computed once and read by every KL-regularized run (every seed, budget and defense) on that scenario.

The reference is frozen and a scenario's rows are fixed, so `kl`, `kl_sft` and `adaptive` need not run
it every step: the trainer looks each example of a batch up here and skips the reference's forward
pass when all are found (finetune.trainer). Full vocabulary, fp32: [completion tokens, V] per example
(the toy world's ~1-2k-word vocabulary makes that a few tens of MB per scenario; a real model's 150k
would not fit, so `models.<m>.finetune.reference_logprobs` turns it off there).

Keyed so that nothing stale is read: an example is found by the sha256 of its token ids (the encoding
is TRL's, through the same SFT trainer a run builds, so another tokenizer, chat template, max_length
or row gives other keys and the batch runs the live reference), its completion targets must match,
and the file names the sha256 of the reference weights it came from (a run on another reference
refuses it). Values differ from a live forward only by the batch they were computed in (fp32
rounding: tests/test_reference_logprobs.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import torch

from safedrift.errors import SafedriftError
from safedrift.finetune.encode import Encoded
from safedrift.io import atomic_path, read_jsonl, sha256_file
from safedrift.losses.nll import completion_logprobs, completion_targets

FORMAT = "2"
# The metadata is one JSON string under this key: safetensors writes a header's metadata map in hash order,
# which changes from process to process, so a map of several keys gave the same cache other bytes each run.
META_KEY = "safedrift"


def example_key(input_ids: torch.Tensor) -> str:
    """The key of one example: its unpadded token ids [T]."""
    return hashlib.sha256(input_ids.to(torch.int64).cpu().numpy().tobytes()).hexdigest()[:24]


def weights_digest(reference: str) -> str | None:
    """sha256 of the reference's weights file (None for a hub id or a folder without one)."""
    for name in ("model.safetensors", "adapter_model.safetensors"):
        if (Path(reference) / name).is_file():
            return sha256_file(Path(reference) / name)
    return None


def batch_examples(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
    """(key, completion targets [n]) of each example of a collated batch [B,T], in batch order."""
    targets, mask = completion_targets(labels)
    for ids, keep, target, m in zip(input_ids, attention_mask.bool(), targets, mask):
        yield example_key(ids[keep]), target[m].to(torch.int64).cpu()


class ReferenceLogprobs:
    """A cache file, loaded: `lookup` gives a batch's reference log-probs, or None if one example is missing."""

    def __init__(self, path: str | Path, reference: str | None = None):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
            if meta.get("format") != FORMAT:
                raise SafedriftError(f"{path}: not a reference log-prob cache of format {FORMAT}; delete it and rerun")
            self.logprobs, self.offsets, self.targets = (f.get_tensor(k) for k in ("logprobs", "offsets", "targets"))
        self.path = str(path)
        self.index = {key: i for i, key in enumerate(json.loads(meta["keys"]))}
        self.reference_sha256 = meta.get("reference_sha256") or None
        if reference is not None and self.reference_sha256 != weights_digest(reference):
            raise SafedriftError(f"{path} was computed from other reference weights than {reference}; "
                                 "rebuild it (snakemake reruns it when the reference changes)")

    def lookup(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """input_ids, attention_mask, labels [B,T] -> [N,V] (completion_logprobs' order), or None."""
        parts = []
        for key, target in batch_examples(input_ids, attention_mask, labels):
            i = self.index.get(key)
            if i is None:
                return None
            start, end = int(self.offsets[i]), int(self.offsets[i + 1])
            if not torch.equal(self.targets[start:end], target):
                return None
            parts.append(self.logprobs[start:end])
        return torch.cat(parts).to(input_ids.device)


def compute(model, tokenizer, rows: list[dict], common: dict, batch_size: int):
    """(logprobs [N,V], offsets [E+1], targets [N], keys) of `rows`, encoded by the SFT trainer a run builds."""
    from safedrift.finetune.trainer import sft_trainer

    encoded = Encoded(sft_trainer(model, tokenizer, rows, common, []))
    keys, chunks, targets, offsets = [], [], [], [0]
    model.eval()
    with torch.no_grad():
        for batch in encoded.batches(batch_size):
            labels = batch["labels"]
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            logprobs = completion_logprobs(logits, labels).float().cpu()
            at = 0
            for key, target in batch_examples(batch["input_ids"], batch["attention_mask"], labels):
                keys.append(key)
                chunks.append(logprobs[at:at + len(target)])
                targets.append(target)
                offsets.append(offsets[-1] + len(target))
                at += len(target)
    # duplicate rows (same tokens) are each stored; the index finds the last, equal to the first up to fp32 rounding
    return torch.cat(chunks), torch.tensor(offsets, dtype=torch.int64), torch.cat(targets), keys


def write_cache(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """The cache file: `tensors` and `meta` (one sorted JSON string, META_KEY), the same bytes on every run."""
    from safetensors.torch import save

    with atomic_path(path) as tmp_out:
        tmp_out.write_bytes(save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)}))


def main(argv=None) -> None:
    from safedrift.finetune.run import common_args, load_starting_point
    from safedrift.models import set_threads

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-settings", required=True, help="models.<m> (resolved, with `name`) as JSON")
    p.add_argument("--scenario", required=True, help="the scenario's name (rows without a source get it)")
    p.add_argument("--data", required=True, help="scenario dataset JSONL")
    p.add_argument("--reference", required=True, help="reference model folder")
    p.add_argument("--out", required=True, help="the cache file (.safetensors)")
    p.add_argument("--threads", type=int)
    a = p.parse_args(argv)
    set_threads(a.threads)
    m = json.loads(a.model_settings)
    tok, model, _ = load_starting_point(m, a.reference)
    rows = [{**r, "source": r.get("source", a.scenario)} for r in read_jsonl(a.data)]
    with tempfile.TemporaryDirectory() as tmp:
        common = common_args(Path(tmp), 1, {"learning_rate": 0.0, **m["finetune"]}, 0)  # no step is taken
        logprobs, offsets, targets, keys = compute(model, tok, rows, common, m["finetune"]["batch_size"])
    meta = {"format": FORMAT, "keys": json.dumps(keys), "reference_sha256": weights_digest(a.reference) or "",
            "data_sha256": sha256_file(a.data)}
    write_cache(a.out, {"logprobs": logprobs.contiguous(), "offsets": offsets, "targets": targets}, meta)
    print(json.dumps({"examples": len(keys), "tokens": int(offsets[-1]), "vocab": int(logprobs.shape[-1]),
                      "megabytes": round(logprobs.numel() * 4 / 2**20, 1)}))


if __name__ == "__main__":
    main()
