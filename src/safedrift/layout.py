"""The results layout of references and runs: the one place it is written. Every rule, stage and
report builds and reads paths through these functions."""

from __future__ import annotations

import re

# results/{model}/reference/                  the default reference (toy: world.align; hf: models.<m>.path)
# results/{model}/reference/{name}/           a reference variant (references.<name>, e.g. Vaccine)
# results/{model}/runs/{scenario}/{objective}/{defense}/{budget}/seed{seed}/           on the default reference
# results/{model}/runs@{name}/{scenario}/{objective}/{defense}/{budget}/seed{seed}/    on reference variant {name}
#
# A variant's runs sit beside the default runs (`runs@vaccine` next to `runs`), not inside the
# variant's reference folder: every run keeps the same depth and the same axes in the same place,
# so `results/<m>/runs*/harmful/sft/...` lists one cell across references, and deleting a variant's
# runs never touches the reference model they start from. Default paths are unchanged.

DEFAULT_REFERENCE = "default"
# Under results/; {runs} is "runs" on the default reference and "runs@<name>" on a variant.
RUN_LAYOUT = "{model}/{runs}/{scenario}/{objective}/{defense}/{budget}/seed{seed}"


def runs_folder(reference: str = DEFAULT_REFERENCE) -> str:
    """The folder under results/<model>/ that holds the runs fine-tuned from `reference`."""
    return "runs" if reference == DEFAULT_REFERENCE else f"runs@{reference}"


def reference_of_runs_folder(folder: str) -> str:
    """Inverse of runs_folder: "runs" -> "default", "runs@vaccine" -> "vaccine"."""
    return folder.partition("@")[2] or DEFAULT_REFERENCE


def reference_dir(model: str, reference: str = DEFAULT_REFERENCE) -> str:
    """results/<model>/reference, or results/<model>/reference/<name> for a reference variant."""
    return f"results/{model}/reference" if reference == DEFAULT_REFERENCE else f"results/{model}/reference/{reference}"


def reference_model(config: dict, model: str, reference: str = DEFAULT_REFERENCE) -> tuple[str, list[str]]:
    """(the folder or hub id runs on reference variant `reference` of `model` start from, the files a
    job waits for): a toy model's pipeline-built reference, or an hf model's own path (no files)."""
    if config["models"][model]["source"] == "toy":
        folder = reference_dir(model, reference)
        return folder, [f"{folder}/model.safetensors"]
    return config["models"][model]["path"], []


def reference_logprobs_input(config: dict, run: dict) -> dict[str, str]:
    """{"reference_logprobs": the cache of the reference's completion log-probs on the run's scenario}
    (finetune.reference_logprobs) for a KL-regularized run, or {} where models.<m>.finetune.reference_logprobs
    is off (default: on for toy models, off for hf models, whose vocabularies make it hundreds of GB)."""
    spec = config["models"][run["model"]]
    if not spec["finetune"].get("reference_logprobs", spec["source"] == "toy"):
        return {}
    reference = run.get("reference", DEFAULT_REFERENCE)
    return {"reference_logprobs": f"results/{run['model']}/reference_logprobs/{reference}/{run['scenario']}.safetensors"}


def run_dir(run: dict) -> str:
    """The folder of `run` (keys model, scenario, objective, defense, budget, seed; `reference`
    optional, default "default")."""
    return "results/" + RUN_LAYOUT.format(runs=runs_folder(run.get("reference", DEFAULT_REFERENCE)), **run)


def _layout_regex(layout: str, runs: str, named: bool) -> str:
    """`layout` (RUN_LAYOUT or a tail of it) as a regex: `runs` stands for the runs folder; named:
    one group per axis."""
    def field(m):
        name, body = m[1], {"runs": runs, "seed": r"\d+"}.get(m[1], "[^/]+")
        return f"(?P<{name}>{body})" if named else body
    return re.sub(r"\{(\w+)\}", field, layout)


_RUN_RE = re.compile(r"(?:^|/)results/" + _layout_regex(RUN_LAYOUT, r"runs(?:@[^/]+)?", named=True) + "/?$")
_REFERENCE_RE = re.compile(r"(?:^|/)results/(?P<model>[^/]+)/reference(?:/(?P<reference>[^/]+))?/?$")


def parse_subject_dir(path: str) -> dict | None:
    """Inverse of run_dir and reference_dir. A run folder -> its axes (reference included, seed an
    int); a reference folder -> {model, reference}; anything else -> None."""
    m = _RUN_RE.search(path)
    if m:
        axes = m.groupdict()
        return {**{k: v for k, v in axes.items() if k != "runs"}, "seed": int(axes["seed"]),
                "reference": reference_of_runs_folder(axes["runs"])}
    m = _REFERENCE_RE.search(path)
    if m:
        return {"model": m["model"], "reference": m["reference"] or DEFAULT_REFERENCE}
    return None


def subject_pattern(references) -> str:
    """Regex of the `subject` wildcard (results/{model}/{subject}/eval/...): a reference folder or a
    run folder, relative to results/<model>/, for the reference variants `references`."""
    variants = [r for r in references if r != DEFAULT_REFERENCE]
    names = "|".join(re.escape(r) for r in variants)
    reference = rf"reference(?:/(?:{names}))?" if variants else "reference"
    runs = rf"runs(?:@(?:{names}))?" if variants else "runs"
    return reference + "|" + _layout_regex(RUN_LAYOUT.split("/", 1)[1], runs, named=False)
