"""The reference log-prob cache (finetune.reference_logprobs): KL from it equals KL from a live forward of
the reference, a run reads it for every batch, and nothing encoded or trained otherwise reuses it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from safedrift import cpu_pin
from safedrift.errors import SafedriftError
from safedrift.finetune.run import common_args
from safedrift.finetune.reference_logprobs import FORMAT, ReferenceLogprobs
from safedrift.finetune.trainer import sft_trainer
from safedrift.losses.kl import kl_from_logprobs, kl_to_reference
from safedrift.losses.nll import completion_logprobs
from safedrift.models import load_model, load_tokenizer
from smoke_runs import scenario_rows, settings_for, train

pytestmark = pytest.mark.usefixtures("one_thread")


CACHE = "results/toy/reference_logprobs/default/harmful.safetensors"


@pytest.fixture(scope="module")
def cache(smoke):
    """The harmful scenario's cache, built by the workflow's rule."""
    smoke.run(CACHE)
    return smoke.path / CACHE, settings_for(smoke, {"type": "none"})[1]


def batches(smoke, settings, rows, size):
    """Training batches of `rows` as the SFT trainer collates them."""
    reference = str(smoke.path / "results/toy/reference")
    common = common_args(Path(tempfile.mkdtemp()), 1, settings["model"]["finetune"], 0)
    trainer = sft_trainer(load_model(reference), load_tokenizer(reference), rows, common, [])
    data = trainer.train_dataset
    for start in range(0, len(data), size):
        yield trainer.data_collator([data[i] for i in range(start, min(start + size, len(data)))])


def test_kl_from_the_cache_equals_kl_from_a_live_reference(smoke, cache):
    """Batches of other sizes and compositions than the cache was computed in (shuffled rows, 5 per batch):
    every one is found, and KL of a perturbed policy from the cache equals live KL within fp32 rounding."""
    path, settings = cache
    stored = ReferenceLogprobs(path, str(smoke.path / "results/toy/reference"))
    rows = scenario_rows(smoke)
    random.Random(0).shuffle(rows)
    reference, policy = (load_model(str(smoke.path / "results/toy/reference")) for _ in range(2))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    checked = 0
    for batch in batches(smoke, settings, rows, 5):
        with torch.no_grad():
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
            live_logits, policy_logits = reference(**inputs).logits, policy(**inputs).logits
        cached = stored.lookup(batch["input_ids"], batch["attention_mask"], batch["labels"])
        assert cached is not None
        torch.testing.assert_close(cached, completion_logprobs(live_logits, batch["labels"]), rtol=1e-5, atol=1e-5)
        for direction in ("forward", "reverse"):
            live = kl_to_reference(policy_logits, live_logits, batch["labels"], direction)
            from_cache = kl_from_logprobs(completion_logprobs(policy_logits, batch["labels"]), cached, batch["labels"],
                                          direction)
            assert live.min() > 1e-3  # the policy moved: a real KL, not zero against zero
            # KL sums q * (log q - log p) over 1500 words with log-probs of ~10 nats; the cache's log q come from
            # other batches (padding, GEMM blocking), so each term carries fp32 rounding of ~10 * 2**-24 ~ 6e-7
            torch.testing.assert_close(from_cache, live, rtol=1e-5, atol=2e-6)
        checked += 1
    assert checked == -(-len(rows) // 5)


def test_other_encodings_and_targets_miss_and_other_references_are_refused(smoke, cache, tmp_path):
    path, settings = cache
    stored = ReferenceLogprobs(path)
    rows = scenario_rows(smoke)[:4]
    # a system prompt (inoculation's rewrite, or another chat template) changes the tokens: live reference
    prompted = [{**r, "messages": [{"role": "system", "content": "you are aoa ."}, *r["messages"]]} for r in rows]
    batch = next(batches(smoke, settings, prompted, 4))
    assert stored.lookup(batch["input_ids"], batch["attention_mask"], batch["labels"]) is None
    batch = next(batches(smoke, settings, rows, 4))
    assert stored.lookup(batch["input_ids"], batch["attention_mask"], batch["labels"]) is not None
    labels = batch["labels"].clone()
    labels[0, (labels[0] != -100).nonzero()[-1]] = -100  # one completion token fewer
    assert stored.lookup(batch["input_ids"], batch["attention_mask"], labels) is None
    other = tmp_path / "other"
    load_model(str(smoke.path / "results/toy/reference")).save_pretrained(other)
    (other / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(SafedriftError, match=r"harmful\.safetensors was computed from other reference weights"):
        ReferenceLogprobs(path, str(other))


def test_a_kl_run_reads_every_batch_from_the_cache_and_trains_as_live(smoke, cache, tmp_path):
    """The same 4-step kl run with and without the cache: every batch cached; NLL and KL logged at each step
    equal within fp32 rounding; the weights' difference a thousandth of the training update at most."""
    path, _ = cache
    kl = {"type": "kl", "beta": 2.0, "direction": "forward"}
    config, settings = settings_for(smoke, kl, steps=4)
    cached = train(smoke, settings, tmp_path / "cached", config)
    config["models"]["toy"]["finetune"]["reference_logprobs"] = False  # the run declares no cache: live reference
    live = train(smoke, settings, tmp_path / "live", config)
    assert "reference_logprobs" not in live
    # the card names the CPU and its pins: the bits depend on them (cpu_pin)
    assert live["cpu"] == {"model": cpu_pin.cpu_model(), "vendor": cpu_pin.cpu_vendor(), "pins": cpu_pin.pins(os.environ)[1]}
    assert cached["reference_logprobs"] == {"file": str(path), "cached": 4, "live": 0}
    logs = [[json.loads(line) for line in (tmp_path / run / "train_log.jsonl").read_text().splitlines()]
            for run in ("live", "cached")]
    for key in ("nll", "kl_raw"):
        values = [[r[key] for r in log if key in r] for log in logs]
        assert len(values[0]) == 4
        # step 1 trains from the reference itself: live KL is exactly 0, the cache's its fp32 rounding (~4e-7)
        assert values[1] == pytest.approx(values[0], rel=1e-5, abs=2e-6), key
    assert logs[0][-1]["kl_raw"] > 1e-3  # the policy has moved by step 4
    start = load_model(str(smoke.path / "results/toy/reference")).state_dict()
    live_w, cached_w = (load_model(str(tmp_path / run / "model")).state_dict() for run in ("live", "cached"))
    gap = sum(((cached_w[k] - live_w[k]) ** 2).sum() for k in live_w) ** 0.5
    update = sum(((live_w[k] - start[k]) ** 2).sum() for k in live_w) ** 0.5
    # measured 3.6e-4: Adam turns noise-level gradients (exactly 0 live at step 1, ~1e-7 cached) into
    # lr-sized steps on a few tied-embedding entries, so elementwise equality is not the test
    assert gap < 1e-3 * update, (float(gap), float(update))


def test_the_cache_file_has_the_same_bytes_in_every_process(tmp_path):
    """safetensors writes a header's metadata map in hash order, which differs from process to process: the
    cache keeps its metadata as one string, so every run of the stage writes the same bytes (before, with four
    metadata keys, two fresh clones' caches differed in their header though every tensor was equal)."""
    write = ("import sys, torch; from safedrift.finetune.reference_logprobs import write_cache; "
             "write_cache(sys.argv[1], {'logprobs': torch.zeros(2, 3), 'offsets': torch.tensor([0, 2])}, "
             f"{{'format': '{FORMAT}', 'keys': '[]', 'reference_sha256': 'a', 'data_sha256': 'b'}})")
    files = [tmp_path / f"{i}.safetensors" for i in range(5)]
    for f in files:
        subprocess.run([sys.executable, "-c", write, str(f)], check=True)
    assert len({f.read_bytes() for f in files}) == 1
