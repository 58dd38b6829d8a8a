"""`token_constrained`: token-wise constrained SFT (Qi et al. 2024, "Safety Alignment Should Be Made
More Than Just a Few Tokens Deep"; their `soft_sft`). The NLL is replaced by
-(2/beta_t) log sigmoid(beta_t * (log pi_theta(y_t) - log pi_ref(y_t))) per completion token, with
a large beta_t on the first response tokens so they stay close to the safe reference
(losses.token_constrained has the formula, the schedule and the source it follows).

Settings (defaults: the paper's fine-tuning-attack setting, the released finetune.py's defaults):
- beta (0.1): beta_t of every token from position bias_length on
- first_token_bias_factor (5): beta_0 = beta * first_token_bias_factor
- bias_factor (20): beta_t = beta * bias_factor for t = 1..bias_length-1
- bias_length (5): how many leading completion tokens get the larger betas

The released code also trains with AdamW beta1 = 0.5 for this loss; the run's optimizer settings
are left as they are here.
"""

from safedrift.defenses.base import Defense as Base
from safedrift.registry import type_schema


class Defense(Base):
    schema = type_schema("token_constrained", {
        "beta": {"type": "number", "exclusiveMinimum": 0,
                 "description": "beta_t of completion tokens from position bias_length on (default 0.1)"},
        "first_token_bias_factor": {"type": "number", "exclusiveMinimum": 0,
                                    "description": "beta_0 = beta * this (default 5)"},
        "bias_factor": {"type": "number", "exclusiveMinimum": 0,
                        "description": "beta_t = beta * this for t = 1..bias_length-1 (default 20)"},
        "bias_length": {"type": "integer", "minimum": 0,
                        "description": "leading completion tokens with the larger betas (default 5)"},
    })
    composes_with = ("sft",)

    def terms(self):
        from safedrift.losses.token_constrained import DEFAULTS, TokenConstrainedTerm

        return [TokenConstrainedTerm(**{k: self.settings.get(k, v) for k, v in DEFAULTS.items()})]
