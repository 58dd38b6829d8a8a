"""`adaptive` ("Learning to Stay Safe", Goel et al. 2026): KL to the reference, scaled by the safety
risk of what is being trained on. r_i is each training example's risk from the activation probe or
the Safety Critic, precomputed by a rule (results/<model>/risk/...), so training pays nothing per
step for it; the weight trace is logged every step (`lambda_mean`).

Settings: risk (probe | critic), direction (of the KL), rule:
- per_example (default): loss = NLL + mean_i lambda_i * KL_i with lambda_i = clip(a * r_i + b,
  lambda_min, lambda_max) (a, b, lambda_min, lambda_max required).
- per_batch (the paper's rule): every optimizer step's examples get one judge score on the paper's
  1..5 scale, r = 1 + 4 * reduce_i r_i with `batch_risk` mean (default) or max, and
  loss = (1 - w) * NLL + w * KL with w = clamp((r - 2) / 3, 0.1, 0.9) (losses.adaptive). The
  paper's released code (github.com/gjyotin305/adaptive-ai-safety-align, commit 27bd4c4) takes the
  batch mean of its judge's 1..5 scores, with w a constant (no gradient) per step, as here; its
  judge rates each example 1..5 where ours gives a probability r_i in 0..1, hence 1 + 4 * r_i.
"""

import json

from safedrift.defenses.base import Defense as Base
from safedrift.layout import reference_logprobs_input
from safedrift.registry import type_schema
from safedrift.errors import ConfigError, SafedriftError


class Defense(Base):
    schema = type_schema("adaptive", {
        "risk": {"enum": ["probe", "critic"]},
        "rule": {"enum": ["per_example", "per_batch"],
                 "description": "per_example (default): loss = NLL + mean_i lambda_i KL_i, lambda_i = clip(a r_i + b, "
                                "lambda_min, lambda_max); per_batch (Goel et al. 2026): each optimizer step's judge score "
                                "r = 1 + 4 * batch_risk of its examples' risks (1..5 scale), w = clamp((r - 2) / 3, 0.1, "
                                "0.9), loss = (1 - w) NLL + w KL"},
        "batch_risk": {"enum": ["max", "mean"],
                       "description": "rule per_batch: how the examples' risks (0..1) make the batch's: mean (default, "
                                      "as the paper's released code) or max (one harmful example makes a harmful batch)"},
        "a": {"type": "number", "description": "rule per_example: slope of lambda in the risk"},
        "b": {"type": "number", "description": "rule per_example: intercept of lambda"},
        "lambda_min": {"type": "number", "minimum": 0, "description": "rule per_example: lower clip of lambda"},
        "lambda_max": {"type": "number", "minimum": 0, "description": "rule per_example: upper clip of lambda"},
        "direction": {"$ref": "#/$defs/kl_direction"},
    }, ("risk", "direction"), description="rule per_example needs a, b, lambda_min, lambda_max; per_batch needs none of them",
        **{"if": {"properties": {"rule": {"const": "per_batch"}}, "required": ["rule"]},
           "else": {"required": ["a", "b", "lambda_min", "lambda_max"]}})
    composes_with = ("sft",)

    @classmethod
    def inputs(cls, settings, run, config):
        return {"risk": f"results/{run['model']}/risk/{settings['risk']}/{run['scenario']}.jsonl",
                **reference_logprobs_input(config, run)}

    @classmethod
    def data_pools(cls, settings, config):
        # the risk rule trains the activation probe on these pools (safedrift.risk)
        if settings["risk"] != "probe":
            return {}
        return {pool: "trains its probe on it" for pool in ("harmful", "benign_requests", "tasks")}

    @classmethod
    def check(cls, name, settings, config):
        if settings.get("rule") != "per_batch" and settings["lambda_min"] > settings["lambda_max"]:
            raise ConfigError(f"config key defenses.{name}.lambda_min: {settings['lambda_min']} exceeds lambda_max "
                              f"{settings['lambda_max']}")

    @classmethod
    def resolve(cls, run_settings, config):
        # the risk file's own settings: a changed probe or critic judge retrains the runs that read it
        run_settings["risk"] = ({"judge": config["judge"]["critic"]} if run_settings["defense"]["risk"] == "critic"
                                else {"probe": config["risk"]["probe"]})
        return run_settings

    def terms(self):
        from safedrift.losses.adaptive import BatchMixtureTerm
        from safedrift.losses.kl import KLTerm

        if self.settings.get("rule", "per_example") == "per_batch":
            return [BatchMixtureTerm(self.settings["direction"], name="kl_adaptive")]
        return [KLTerm(None, self.settings["direction"], name="kl_adaptive")]

    def example_columns(self, rows):
        """{"kl_weight": the weight of each row}, rows in training order (finetune.schedule: batch k is
        rows[k*B:(k+1)*B], B examples per optimizer step)."""
        return {"kl_weight": self.kl_weights(rows)}

    def kl_weights(self, rows):
        import torch

        from safedrift.losses.adaptive import batch_judge_score, batch_kl_weight, risk_weights

        path = self.context.inputs["risk"]
        with open(path) as f:
            risk = {r["id"]: r["risk"] for r in map(json.loads, f)}
        missing = [r["id"] for r in rows if r["id"] not in risk]
        if missing:
            raise SafedriftError(f"{path}: no risk for training example {missing[0]!r} "
                                 f"({len(missing)} missing); rebuild the risk rule for this scenario")
        s = self.settings
        r = torch.tensor([float(risk[row["id"]]) for row in rows])
        if s.get("rule", "per_example") == "per_batch":
            step = self.context.batch_size
            weights = []
            for start in range(0, len(rows), step):
                w = batch_kl_weight(batch_judge_score(r[start:start + step], s.get("batch_risk", "mean")))
                weights += [w.item()] * len(r[start:start + step])
            return weights
        return risk_weights(r, s["a"], s["b"], s["lambda_min"], s["lambda_max"]).tolist()
