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
over-refusal.

Torch and the models are imported where they are used: config validation imports this module (for
its schema and checks) at every Snakemake start."""

import copy
import math
import random

from safedrift.defenses.base import Defense as Base
from safedrift.registry import type_schema
from safedrift.errors import ConfigError
from safedrift.io import read_jsonl
from safedrift.judges.keyword import is_refusal

REFUSAL_POOL, TASK_POOL = "refusals", "tasks"


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
            from safedrift.config import run_dir

            files["misaligned_model"] = f"{run_dir({**run, 'objective': spec['objective'], 'defense': spec['defense']})}/model"
        return files

    @classmethod
    def check(cls, name, settings, config):
        from safedrift.config import check_composable

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

    def safe_rows(self, model, tokenizer, train_rows):
        import torch

        from safedrift.models import load_model

        s, ctx = self.settings, self.context
        refusals, tasks = safe_pools(read_jsonl(ctx.inputs[REFUSAL_POOL]), read_jsonl(ctx.inputs[TASK_POOL]))
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
            refusals = by_perplexity_gap(model, misaligned, tokenizer, refusals)
            tasks = by_perplexity_gap(model, misaligned, tokenizer, tasks)
            del misaligned
        else:
            rng.shuffle(refusals)
            rng.shuffle(tasks)
        return mixed(refusals, tasks, s.get("refusal_share", 0.5), rng), per_batch / ctx.batch_size

    def _rank(self, model, tokenizer, train_rows, candidates, max_length=256):
        """Candidates sorted by loss increase under a probe model briefly fine-tuned on the run's data."""
        import torch

        from safedrift.finetune.encode import encode_chats
        from safedrift.losses.nll import example_nll, token_nll

        probe = copy.deepcopy(model).train()
        optimizer = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-3)
        rng = random.Random(f"rank/{self.context.seed}")
        for _ in range(self.settings.get("rank_steps", 5)):
            batch = encode_chats(tokenizer, rng.sample(train_rows, min(len(train_rows), self.context.batch_size)),
                                 max_length)
            batch = {k: v.to(next(probe.parameters()).device) for k, v in batch.items()}
            loss = token_nll(probe(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                             batch["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        gaps = []
        with torch.no_grad():
            for i in range(0, len(candidates), 64):
                batch = encode_chats(tokenizer, candidates[i:i + 64], max_length)
                batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
                inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
                gaps += (example_nll(probe(**inputs).logits, batch["labels"])
                         - example_nll(model(**inputs).logits, batch["labels"])).tolist()
        del probe
        order = sorted(range(len(candidates)), key=lambda i: (-gaps[i], candidates[i]["id"]))
        return [candidates[i] for i in order if not math.isnan(gaps[i])]


def by_perplexity_gap(aligned, misaligned, tokenizer, candidates: list[dict], max_length: int = 256) -> list[dict]:
    """Candidates in descending gap = NLL_misaligned - NLL_aligned (mean per completion token), ties
    by id; a candidate without completion tokens after truncation (NaN gap) is left out."""
    import torch

    from safedrift.finetune.encode import encode_chats
    from safedrift.losses.nll import example_nll

    gaps = []
    with torch.no_grad():
        for i in range(0, len(candidates), 64):
            batch = encode_chats(tokenizer, candidates[i:i + 64], max_length)
            labels = batch["labels"]
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            nll = [example_nll(m(**{k: v.to(next(m.parameters()).device) for k, v in inputs.items()}).logits,
                               labels.to(next(m.parameters()).device)).cpu() for m in (misaligned, aligned)]
            empty = (labels[:, 1:] != -100).sum(-1) == 0
            gaps += torch.where(empty, torch.nan, nll[0] - nll[1]).tolist()
    order = sorted(range(len(candidates)), key=lambda i: (-gaps[i], candidates[i]["id"]))
    return [candidates[i] for i in order if not math.isnan(gaps[i])]
