"""`interleave`: fill a fraction of every batch with safe data: harmful prompts with refusals and
benign tasks with correct answers (`refusal_share` of them refusals), from the world's pools.

selection `random` samples the safe pool; `ranked` prefers the safe examples that fine-tuning
would make the model forget most: a probe copy of the model takes `rank_steps` plain SFT steps on
the run's own data, and each candidate is scored by how much its loss rises (probe minus
reference). `perplexity_gap` is Interleaving++ (Kaczér et al. 2025, "In-Training Defenses against
Emergent Misalignment"): it prefers the safe examples a misaligned model finds least likely
compared with the aligned one. Each candidate's gap is the misaligned model's mean per-token NLL
of the candidate's answer (completion tokens) minus the aligned (reference) model's, i.e. the log
of their perplexity ratio; candidates are taken in descending gap, ties by id. The paper selects
by the perplexity gap between the aligned and a misaligned model; that the gap is this log-ratio of
completion-token perplexities (rather than, say, a perplexity difference) is our reading.
`misaligned_model` names the misaligned model: a model folder or hub id, or
`{objective, defense}`, the run of that objective and defense on the same model, scenario, budget
and seed (e.g. the SFT/none run this defense defends against; the workflow trains it first).
Benign candidates whose target is a refusal are filtered out, so interleaving never teaches
over-refusal. `ranked` and `perplexity_gap` score a candidate on the completion tokens the run's SFT
trainer trains on (finetune.encode: the trainer's own encoding, whatever the chat template), within
its first 256 tokens; one with none left there is left out. A selection that leaves no safe example
is an error, not a run that trains as defense `none`.

Torch and the models are imported where they are used: config validation imports this module (for
its schema and checks) at every Snakemake start."""

import copy
import math
import random

from safedrift.defenses.base import Defense as Base
from safedrift.registry import type_schema
from safedrift.errors import ConfigError, DataError
from safedrift.io import read_jsonl
from safedrift.judges.keyword import is_refusal

REFUSAL_POOL, TASK_POOL = "refusals", "tasks"
SCORE_LENGTH = 256  # ranked and perplexity_gap score each candidate on its first 256 tokens


def safe_pools(refusals: list[dict], tasks: list[dict]) -> tuple[list[dict], list[dict]]:
    """The pools' rows tagged with their source; benign tasks whose target is a refusal are left out
    (no over-refusal training)."""
    return ([{**r, "source": REFUSAL_POOL} for r in refusals],
            [{**r, "source": TASK_POOL} for r in tasks if not is_refusal(r["target"])])


def mixed(refusals: list[dict], tasks: list[dict], refusal_share: float, rng: random.Random) -> list[dict]:
    """As many safe rows as both (ordered) pools allow at `refusal_share`, shuffled by `rng`: however
    long the run, the batch schedule cycles through them, so a longer budget continues a shorter one
    (budget ladders)."""
    share = refusal_share
    total = min(len(refusals) / share if share else math.inf, len(tasks) / (1 - share) if share < 1 else math.inf)
    n_refusal = round(total * share)
    chosen = refusals[:n_refusal] + tasks[:round(total) - n_refusal]
    rng.shuffle(chosen)
    return chosen


class Defense(Base):
    schema = type_schema("interleave", {
        "fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "selection": {
            "enum": ["random", "ranked", "perplexity_gap"],
            "description": "random; ranked (safe examples whose loss a briefly fine-tuned probe copy raises most); "
                           "perplexity_gap (Interleaving++, Kaczér et al. 2025): descending mean completion-token NLL "
                           "of misaligned_model minus the reference's, needs misaligned_model"},
        "misaligned_model": {
            "description": "selection perplexity_gap: the misaligned model, a model folder or hub id, or {objective, "
                           "defense}: that run on the same model, scenario, budget and seed (e.g. {objective: sft, "
                           "defense: none}, the run this defense defends against; trained first)",
            "oneOf": [{"type": "string", "minLength": 1},
                      {"type": "object", "additionalProperties": False, "required": ["objective", "defense"],
                       "properties": {"objective": {"$ref": "#/$defs/name"}, "defense": {"$ref": "#/$defs/name"}}}]},
        "refusal_share": {"$ref": "#/$defs/fraction",
                          "description": "share of safe examples that are refusals (the rest benign tasks)"},
        "rank_steps": {"$ref": "#/$defs/positive_int",
                       "description": "ranked: SFT steps of the probe model that scores forgetting"},
    }, ("fraction", "selection"))
    composes_with = ("sft",)

    @classmethod
    def inputs(cls, settings, run, config):
        files = {pool: f"results/{run['model']}/world/pools/{pool}.jsonl" for pool in (REFUSAL_POOL, TASK_POOL)}
        spec = settings.get("misaligned_model")
        if isinstance(spec, dict):  # a run of this workflow: same model, scenario, budget and seed
            from safedrift.layout import run_dir

            files["misaligned_model"] = f"{run_dir({**run, 'objective': spec['objective'], 'defense': spec['defense']})}/model"
        return files

    @classmethod
    def model_paths(cls, settings):
        spec = settings.get("misaligned_model")
        return {"misaligned_model": spec} if isinstance(spec, str) else {}

    @classmethod
    def check(cls, name, settings, config):
        from safedrift.composition import check_composable

        key = f"config key defenses.{name}.misaligned_model"
        spec = settings.get("misaligned_model")
        if settings["selection"] == "perplexity_gap" and spec is None:
            raise ConfigError(f"{key}: selection perplexity_gap needs the misaligned model (a model folder, or "
                              "{objective: sft, defense: none} for that run of the same scenario and budget)")
        if spec is not None and settings["selection"] != "perplexity_gap":
            raise ConfigError(f"{key}: only selection perplexity_gap reads it; remove it or set the selection")
        if isinstance(spec, dict):
            for axis, section in (("objective", "objectives"), ("defense", "defenses")):
                if spec[axis] not in config[section]:
                    raise ConfigError(f"{key}.{axis}: {spec[axis]!r} is not defined under {section}")
            other = config["defenses"][spec["defense"]]
            if other["type"] == settings["type"] and isinstance(other.get("misaligned_model"), dict):
                raise ConfigError(f"{key}.defense: {spec['defense']!r} itself selects against a run; name a run "
                                  "without it (e.g. defense: none) so the runs do not wait on each other")
            check_composable(config, {"objective": spec["objective"], "defense": spec["defense"]}, key)

    @property
    def key(self) -> str:
        """The config key of the selection, named in errors."""
        return f"defenses.{self.settings.get('name', '<interleave>')}.selection"

    def safe_rows(self, model, tokenizer, train_rows):
        import torch

        from safedrift.models import load_model

        s, ctx = self.settings, self.context
        refusals, tasks = safe_pools(read_jsonl(ctx.inputs[REFUSAL_POOL]), read_jsonl(ctx.inputs[TASK_POOL]))
        counts = len(refusals), len(tasks)
        per_batch = max(1, round(s["fraction"] * ctx.batch_size))
        rng = random.Random(f"interleave/{ctx.seed}")
        if s["selection"] == "ranked":
            refusals = self._rank(model, tokenizer, train_rows, refusals)
            tasks = self._rank(model, tokenizer, train_rows, tasks)
        elif s["selection"] == "perplexity_gap":
            dtypes = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
            dtype = dtypes.get(next(model.parameters()).dtype, "float32")  # as the aligned model was loaded
            path = ctx.inputs.get("misaligned_model", s.get("misaligned_model"))  # a run's folder, else the setting
            misaligned = load_model(path, dtype=dtype,
                                    key=f"defenses.{s.get('name', '<interleave>')}.misaligned_model")
            misaligned.eval()
            refusals = by_perplexity_gap(model, misaligned, tokenizer, refusals, seed=ctx.seed, key=self.key)
            tasks = by_perplexity_gap(model, misaligned, tokenizer, tasks, seed=ctx.seed, key=self.key)
            del misaligned
        else:
            rng.shuffle(refusals)
            rng.shuffle(tasks)
        chosen = mixed(refusals, tasks, s.get("refusal_share", 0.5), rng)
        if not chosen:  # the run would train as defense none
            raise DataError(
                f"config key {self.key}: {s['selection']} kept "
                f"{len(refusals)} of {counts[0]} refusals and {len(tasks)} of {counts[1]} tasks, no safe examples "
                f"at refusal_share {s.get('refusal_share', 0.5)}; check {ctx.inputs[REFUSAL_POOL]} and "
                f"{ctx.inputs[TASK_POOL]} (ranked and perplexity_gap leave out a candidate with no answer token "
                f"in its first {SCORE_LENGTH}), or set another selection or refusal_share")
        return chosen, per_batch / ctx.batch_size

    def _rank(self, model, tokenizer, train_rows, candidates, max_length=SCORE_LENGTH):
        """Candidates sorted by loss increase under a probe model briefly fine-tuned on the run's data."""
        import torch

        from safedrift.finetune.encode import ROW, encode_chats
        from safedrift.losses.nll import example_nll, token_nll

        seed = self.context.seed
        rng = random.Random(f"rank/{seed}")
        size = min(len(train_rows), self.context.batch_size)
        steps = [rng.sample(train_rows, size) for _ in range(self.settings.get("rank_steps", 5))]
        # the probe's steps and the candidates, encoded as the run's trainer encodes them
        probe_data = encode_chats(model, tokenizer, [r for step in steps for r in step], max_length, seed, self.key)
        scored = encode_chats(model, tokenizer, candidates, max_length, seed, self.key)
        probe = copy.deepcopy(model).train()
        optimizer = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-3)
        for k in range(len(steps)):
            for batch in probe_data.batches(size, range(k * size, (k + 1) * size)):  # one batch (none: all truncated)
                batch = {key: v.to(next(probe.parameters()).device) for key, v in batch.items()}
                loss = token_nll(probe(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                 batch["labels"])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
        gaps = [math.nan] * len(candidates)  # NaN: no completion token left after truncation
        with torch.no_grad():
            for batch in scored.batches(64):
                batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
                inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
                gap = (example_nll(probe(**inputs).logits, batch["labels"])
                       - example_nll(model(**inputs).logits, batch["labels"]))
                for i, g in zip(batch[ROW].tolist(), gap.tolist()):
                    gaps[i] = g
        del probe
        order = sorted(range(len(candidates)), key=lambda i: (-gaps[i], candidates[i]["id"]))
        return [candidates[i] for i in order if not math.isnan(gaps[i])]


def by_perplexity_gap(aligned, misaligned, tokenizer, candidates: list[dict], max_length: int = SCORE_LENGTH,
                      seed: int = 0, key: str | None = None) -> list[dict]:
    """Candidates in descending gap = NLL_misaligned - NLL_aligned (mean per completion token), ties
    by id; a candidate without completion tokens after truncation (NaN gap) is left out. The
    completion tokens are those the run's SFT trainer trains on (finetune.encode.encode_chats)."""
    import torch

    from safedrift.finetune.encode import ROW, encode_chats
    from safedrift.losses.nll import example_nll

    gaps = [math.nan] * len(candidates)
    with torch.no_grad():
        for batch in encode_chats(aligned, tokenizer, candidates, max_length, seed, key).batches(64):
            labels = batch["labels"]
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            nll = [example_nll(m(**{k: v.to(next(m.parameters()).device) for k, v in inputs.items()}).logits,
                               labels.to(next(m.parameters()).device)).cpu() for m in (misaligned, aligned)]
            for i, gap in zip(batch[ROW].tolist(), (nll[0] - nll[1]).tolist()):
                gaps[i] = gap
    order = sorted(range(len(candidates)), key=lambda i: (-gaps[i], candidates[i]["id"]))
    return [candidates[i] for i in order if not math.isnan(gaps[i])]
