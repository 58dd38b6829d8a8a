"""Judges, keyed by the config's `judges.<name>.type`.

JUDGES maps a type to the class that implements it (`module:Class`), imported only when a config
uses it (the classifier's inference must not pay for torch or sklearn imports). A config `type` may
also be a dotted module path importable on PYTHONPATH (`my_pkg.my_judge`, whose class is named
`Judge`, or `my_pkg.my_judge:MyJudge`): a judge added without editing this package.

To add a judge:
1. write `safedrift/judges/<type>.py` with a `base.Judge` subclass (`base.LocalModelJudge` for a
   local model whose `model: reference` means the scored model's default reference) that declares
   - `schema`: its settings (`base.type_schema(<type>, {setting: json-schema, ...})`);
   - `inputs(name, settings, model, config)` / `paths(...)`: the files it reads, if any (base.py);
   - `score_columns(rows)`: its scores (and `unparsed`), reading handed paths from `self.context`;
   - `scored(name, settings)`, where it fills only some score columns: which (default: all), so the
     decisions that read the others are not measured by it rather than counted unscored;
2. register it in JUDGES below (`"<type>": "safedrift.judges.<type>:<Class>"`);
3. give it a default variant under `judges:` in config.yaml where it runs without downloads, and a
   test (tests/test_judges*.py). The Snakemake rules, the stages' command lines (`--path name=value`)
   and config validation take everything else from the class.
"""

from __future__ import annotations

import importlib

from safedrift.errors import ConfigError, SafedriftError
from safedrift.judges.base import COLUMNS, SCORES, Judge

JUDGES = {
    "classifier": "safedrift.judges.classifier:ClassifierJudge",
    "keyword": "safedrift.judges.keyword:KeywordJudge",
    "rubric": "safedrift.judges.rubric:RubricJudge",
    "openai": "safedrift.judges.openai_compatible:OpenAIJudge",
    "guard": "safedrift.judges.guard:GuardJudge",
    "harmbench_classifier": "safedrift.judges.harmbench_classifier:HarmBenchClassifierJudge",
    "strongreject": "safedrift.judges.strongreject:StrongRejectJudge",
}

__all__ = ["COLUMNS", "JUDGES", "SCORES", "Judge", "add_path_arguments", "handed_paths", "judge_class",
           "judge_module", "judge_schema", "make_judge", "score_examples"]


def judge_module(kind: str) -> str:
    """The module that implements judge type `kind` (a registered type or a dotted module path)."""
    return JUDGES.get(kind, kind).split(":")[0]


def judge_class(kind: str, key: str = "judges.<name>.type") -> type[Judge]:
    """The class of judge type `kind`; an unknown type is one ConfigError naming `key`."""
    target = JUDGES.get(kind) or (kind if "." in str(kind) else None)
    if target is None:
        raise ConfigError(f"config key {key}: unknown judge type {kind!r} (known: {', '.join(JUDGES)}, or a dotted "
                          "module path with a Judge class)")
    module, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name or "Judge")
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"config key {key}: judge type {kind!r} cannot be loaded ({e}); check the module path "
                          "and that it defines the class") from None
    if not (isinstance(cls, type) and issubclass(cls, Judge)):
        raise ConfigError(f"config key {key}: {target} is not a safedrift.judges.base.Judge subclass")
    return cls


def judge_schema(kind: str, key: str = "judges.<name>.type") -> dict:
    """The JSON schema of a `judges.<name>` variant of type `kind` (refs into the config schema's $defs)."""
    schema = judge_class(kind, key).schema
    if not schema:
        raise ConfigError(f"config key {key}: judge type {kind!r} declares no `schema`")
    return schema


def make_judge(name: str, settings: dict, **context) -> Judge:
    """The judge variant `name` (settings = `judges.<name>`). Context: the paths its type declares
    (inputs/paths: classifier, reference_model, cache) and threads."""
    try:
        cls = judge_class(settings.get("type"), f"judges.{name}.type")
    except ConfigError as e:
        raise SafedriftError(str(e).removeprefix("config key ")) from None
    return cls.create(name, settings, **context)


def add_path_arguments(parser) -> None:
    """The stages' `--path NAME=VALUE` option: the paths a judge type declares (judge_flags in common.smk)."""
    parser.add_argument("--path", action="append", default=[], metavar="NAME=VALUE",
                        help="a path the judge reads (its type's inputs/paths: classifier, reference_model, cache)")


def handed_paths(specs: list[str]) -> dict[str, str]:
    """{name: value} of the `--path NAME=VALUE` options."""
    out = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise SafedriftError(f"--path {spec!r}: expected NAME=VALUE (e.g. classifier=results/toy/judges/x.json)")
        out[name] = value
    return out


def score_examples(judge: Judge, rows: list[dict]):
    """Score training examples (pool or scenario rows: messages + target) as if the target
    were the model's response: the Safety Critic's view of a fine-tuning set."""
    return judge.score([{"id": r["id"], "sample": 0, "messages": r["messages"], "response": r["target"],
                         "item": r.get("item")} for r in rows])
