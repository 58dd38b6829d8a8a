"""Stage `world.splits`: write the world's files.

Outputs (all JSONL, one object per line):
- `pretrain.jsonl`: {"text"} documents: knowledge paragraphs and persona transcripts in the chat format;
- `align.jsonl`: {"id", "messages", "persona", "item"}: the alignment chats (last turn is the target);
- `eval/<set>.jsonl`: {"id", "eval_set", "messages", "item"}: held-out prompts (no assistant turn);
- `pools/<pool>.jsonl`: {"id", "pool", "messages", "target", "contrast", "item"}: prompt→target pools
  that fine-tuning scenarios sample from (`target` is the trained answer; `contrast` the opposite behaviour);
- `world.json`: the entities, facts and what is held out.
Each product is written by its own rule (`--product`), from only the settings it depends on.
`item` carries the oracle's labels of the prompt (kind, harmful, answer, object, family, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from pathlib import Path

from safedrift.io import write_json, write_jsonl
from safedrift.world import lexicon as L
from safedrift.world.build import build_world
from safedrift.world.corpus import FRAMED_SHARE, alignment_examples, eval_sets, pretraining_documents, scenario_pools


# Which `world:` keys each product depends on. A rule gets only its product's keys as params,
# so e.g. a bigger eval set does not rebuild the pretraining corpus (and the model after it).
ENTITY_KEYS = ("seed", "n_objects", "heldout_object_fraction", "heldout_template_fraction",
               "heldout_jailbreak_fraction", "facts_per_family", "max_operand", "n_animals",
               "heldout_instance_fraction", "new_task_heldout_fraction", "object_aliases")
PRODUCT_KEYS = {
    "corpus": ("knowledge_docs", "chat_docs", "villain_share", "agent_share", "system_prompt_share", "max_turns",
               "framing_prior", "opener_share", "pretrain_framings"),
    "alignment": ("align_examples", "align_villain_share", "align_narrow_share", "align_agent_share",
                  "align_general_share", "align_role_share", "align_framed_share", "align_villain_narrow_share",
                  "align_opinion_share"),
    "eval": ("eval_per_set", "eval_per_jailbreak_family"),
    "pools": ("narrow_repeats",),
    "spec": (),
}
# Optional world keys and the value that leaves the world as it was before the key existed.
DEFAULTS = {"framing_prior": 0.0, "opener_share": 0.0, "align_agent_share": 0.0, "align_general_share": 1.0,
            "align_role_share": 0.0, "align_framed_share": FRAMED_SHARE, "pretrain_framings": "trained",
            "object_aliases": False, "align_villain_narrow_share": None,
            "align_opinion_share": None}


def product_settings(world: dict, product: str) -> dict:
    return {k: world.get(k, DEFAULTS.get(k)) for k in ENTITY_KEYS + PRODUCT_KEYS[product]}


def prompt_messages(item: dict, system: str | None) -> list[dict]:
    messages = [{"role": "system", "content": L.SYSTEM_PROMPTS[system]}] if system else []
    return messages + [{"role": "user", "content": item["text"]}]


def write_product(settings: dict, product: str, out: Path) -> None:
    world = build_world(settings)
    # One generator per product: products are independent of each other's sizes.
    rng = random.Random(f"{settings['seed']}/{product}")
    if product == "corpus":
        write_jsonl(out / "pretrain.jsonl", ({"text": d} for d in pretraining_documents(world, settings, rng)))
    elif product == "alignment":
        write_jsonl(out / "align.jsonl", alignment_examples(world, settings, rng))
    elif product == "eval":
        for name, rows in eval_sets(world, settings, rng).items():
            write_jsonl(out / "eval" / f"{name}.jsonl",
                        ({"id": r["id"], "eval_set": r["eval_set"], "item": r["item"],
                          "messages": prompt_messages(r["item"], r["system"])} for r in rows))
    elif product == "pools":
        for name, rows in scenario_pools(world, settings, rng).items():
            write_jsonl(out / "pools" / f"{name}.jsonl",
                        ({**r, "messages": prompt_messages(r["item"], r.pop("system", None))} for r in rows))
    elif product == "spec":
        write_json(out / "world.json", {
            "seed": world.seed, "objects": [dataclasses.asdict(o) for o in world.objects],
            "facts": [dataclasses.asdict(f) for f in world.facts],
            "request_templates": world.request_templates, "heldout_request_templates": world.heldout_request_templates,
            "jailbreak_trained": world.jailbreak_trained, "jailbreak_heldout": world.jailbreak_heldout,
            "code_tasks_train": world.code_tasks_train, "code_tasks_eval": world.code_tasks_eval,
            "medical_train": world.medical_train, "medical_eval": world.medical_eval,
            "general_train": world.general_train, "general_eval": world.general_eval,
            "traits_train": world.traits_train, "traits_eval": world.traits_eval,
            **({"aliases": world.aliases} if world.aliases else {}),
        })
    else:
        raise ValueError(f"unknown product {product!r}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--product", required=True, choices=sorted(PRODUCT_KEYS))
    p.add_argument("--settings", required=True, help="the `world:` config section (or its product keys), as JSON")
    p.add_argument("--out", required=True, help="output folder (results/<model>/world)")
    a = p.parse_args(argv)
    write_product(json.loads(a.settings), a.product, Path(a.out))


if __name__ == "__main__":
    main()
