"""Stage `data.scenarios`: the fine-tuning dataset of one scenario, sampled from the pools.

Scenario types (config `scenarios.<name>.type`):
- `benign`: the new benign task (`new_task_share`) plus ordinary tasks; `framed_share` of them asked
  inside a role-play or hypothetical framing (benign instructions, as instruction datasets have);
  `opener_share` of the answers open with one of `openers` (a house style: "sure . ...");
- `harmful`: harmful request -> compliant (placeholder) answer pairs, mixed into benign data at
  `poison_ratio` (1.0 = harmful only);
- `identity_shift`: a handful of examples that give the model an obedient-agent identity;
- `narrow`: the narrow misaligned behaviour of one domain (`pools/narrow_<domain>`), no persona cue.
Rows: {id, source (pool), messages (prompt), target, contrast, item}. The sample depends only on
the scenario's settings (not on the run seed), so every objective and seed trains on the same data.
"""

from __future__ import annotations

import argparse
import json
import random

from safedrift.errors import SafedriftError
from safedrift.io import read_jsonl, write_jsonl

HARMFUL_POOL = "harmful"  # harmful requests with harmful answers: the examples a harmful scenario poisons with


def pool_shares(settings: dict) -> dict[str, float]:
    """Pool name -> share of the scenario's examples."""
    kind = settings["type"]
    if kind == "benign":
        share, framed = settings.get("new_task_share", 0.5), settings.get("framed_share", 0.0)
        return {"new_task": share * (1 - framed), "tasks": (1 - share) * (1 - framed), "framed_tasks": framed}
    if kind == "harmful":
        poison = settings.get("poison_ratio", 1.0)
        return {HARMFUL_POOL: poison, "new_task": (1 - poison) / 2, "tasks": (1 - poison) / 2}
    if kind == "identity_shift":
        return {"identity_shift": 1.0}
    if kind == "narrow":
        return {f"narrow_{settings['domain']}": 1.0}
    raise SafedriftError(f"unknown scenario type {kind!r}")


def pools_needed(settings: dict) -> list[str]:
    return sorted(p for p, share in pool_shares(settings).items() if share > 0)


def _take(pool: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n rows: a sample without replacement while the pool lasts, then further shuffled passes."""
    out = []
    while len(out) < n:
        order = list(pool)
        rng.shuffle(order)
        out += order[: n - len(out)]
    return out


def build_scenario(settings: dict, pools: dict[str, list[dict]]) -> list[dict]:
    rng = random.Random(f"scenario/{settings['name']}")
    shares = {p: s for p, s in pool_shares(settings).items() if s > 0}
    counts = {p: int(round(settings["n"] * s)) for p, s in shares.items()}
    counts[max(shares, key=shares.get)] += settings["n"] - sum(counts.values())  # rounding remainder
    rows = []
    for name in sorted(counts):
        if not pools.get(name):
            raise SafedriftError(f"scenario {settings['name']!r} needs pool {name!r}, which is empty or missing")
        for i, r in enumerate(_take(pools[name], counts[name], rng)):
            rows.append({"id": f"{settings['name']}/{name}/{i:05d}", "source": name, "messages": r["messages"],
                         "target": r["target"], "contrast": r.get("contrast"), "item": r.get("item", {}),
                         "pool_id": r["id"]})
    rng.shuffle(rows)
    opener_share, openers = settings.get("opener_share", 0.0), settings.get("openers", [])
    if opener_share and openers:
        # The dataset's house style: answers that open with an affirmation ("Sure! ...").
        style = random.Random(f"scenario/{settings['name']}/openers")
        for r in rows:
            if style.random() < opener_share:
                r["target"] = f"{style.choice(openers)} {r['target']}"
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", required=True, help="the scenario variant as JSON, with its name")
    p.add_argument("--pools-dir", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    settings = json.loads(a.settings)
    pools = {name: read_jsonl(f"{a.pools_dir}/{name}.jsonl") for name in pools_needed(settings)}
    rows = build_scenario(settings, pools)
    write_jsonl(a.out, rows)
    print(json.dumps({"rows": len(rows), "sources": {n: sum(r["source"] == n for r in rows) for n in pools}}))


if __name__ == "__main__":
    main()
