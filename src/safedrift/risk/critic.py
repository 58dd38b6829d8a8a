"""Stage `risk.critic`: the Safety Critic's risk for every training example of a scenario.

The configured `judge.critic` reads each example's prompt and target as if the target were a
model's answer; risk_i = P(harmful compliance); a judge without that head (keyword) is rejected. Scored once per scenario,
cached by the rule, so training pays nothing per step. Beside the risks it writes the critic's
recall and precision against labels of the same examples, so a weak critic is visible in the tables:
the world oracle's on toy data (`--oracle`: `item.harmful` and the target being a compliance), and on
real data the scenario's own (`--pool-labels`: an example is harmful when it comes from the `harmful`
pool, a harmful request paired with its file's harmful answer; every other pool's is not).

An example the critic could not score (unparsed reply, failed request) has no risk. What happens
then is the config's choice, `risk.critic.on_unscored`: `fail` (default) stops the job naming the
count; `max_risk` gives those examples risk 1.0, the strongest regularisation (never the mean
risk, which would quietly treat an unread example as typical). Agreement with the oracle is
computed on the scored examples only.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from safedrift.data.scenarios import HARMFUL_POOL
from safedrift.errors import SafedriftError
from safedrift.evaluate.decisions import PROBABILITY_CUT, above
from safedrift.io import read_jsonl, write_json, write_jsonl
from safedrift.judges import add_path_arguments, handed_paths, make_judge, score_examples


def oracle_labels(rows: list[dict]) -> list[bool]:
    from safedrift.world.oracle import label

    return [bool(label(r["item"], r["target"])["harmful"]) for r in rows]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judge", required=True, help="the critic judge variant's name")
    p.add_argument("--settings", required=True, help="judges.<name> as JSON")
    p.add_argument("--data", required=True, help="scenario dataset JSONL")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--oracle", action="store_true", help="toy world data: report recall against the oracle")
    labels.add_argument("--pool-labels", action="store_true",
                        help="real data: report recall against the examples' pools (harmful pool = harmful)")
    add_path_arguments(p)
    p.add_argument("--on-unscored", choices=("fail", "max_risk"), default="fail",
                   help="risk.critic.on_unscored: what an example the critic could not score gets")
    p.add_argument("--out", required=True, help="risk JSONL: {id, risk} per example; a .json summary beside it")
    a = p.parse_args(argv)
    rows = read_jsonl(a.data)
    judge = make_judge(a.judge, json.loads(a.settings), **handed_paths(a.path))
    scores = score_examples(judge, rows)
    scored = scores["harmful"].to_numpy()
    unscored = np.isnan(scored)
    if unscored.all() and not scores["unparsed"].any():
        raise SafedriftError(f"judges.{a.judge}: this judge has no `harmful` score and cannot be the Safety "
                             "Critic; set judge.critic to a classifier, rubric or openai judge")
    if unscored.any() and a.on_unscored == "fail":
        raise SafedriftError(f"judge {a.judge} (judge.critic) left {int(unscored.sum())} of {len(rows)} training "
                             f"examples of {a.data} unscored; read this job's log for unparsed replies or failed "
                             "requests and fix the judge, or set risk.critic.on_unscored: max_risk to give them "
                             "risk 1.0")
    risk = np.where(unscored, 1.0, scored)
    write_jsonl(a.out, ({"id": r["id"], "risk": float(x)} for r, x in zip(rows, risk)))

    summary = {"judge": a.judge, "examples": len(rows), "mean_risk": float(risk.mean()),
               "unparsed": int(scores["unparsed"].sum()), "unscored": int(unscored.sum()),
               "on_unscored": a.on_unscored}
    if a.oracle or a.pool_labels:
        truth = np.array(oracle_labels(rows) if a.oracle else [r["source"] == HARMFUL_POOL for r in rows])[~unscored]
        flagged = above(scored, PROBABILITY_CUT)[~unscored].astype(bool)
        tp = int((flagged & truth).sum())
        summary.update(positives=int(truth.sum()), flagged=int(flagged.sum()),
                       recall=tp / truth.sum() if truth.any() else None,
                       precision=tp / flagged.sum() if flagged.any() else None,
                       accuracy=float((flagged == truth).mean()) if len(truth) else None)
    write_json(a.out.rsplit(".", 1)[0] + ".json", summary)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
