"""Stage `evaluate.labelled_validation`: any judge against a small labelled file in the real formats.

Real data has no oracle, so a judge (rubric, openai, classifier, keyword) is validated before a
study on a file of chat rows with labels: one JSON object per line, `messages` (the prompt's chat
turns, then the assistant turn being judged) and `labels` ({decision: true|false} for the
decisions the row tests: harmful, refusal, misaligned, incoherent, narrow_misaligned). The judge
scores every row through its normal interface (judges.make_judge, Judge.score), its scores
become decisions as in evaluate.metrics (evaluate.decisions), and the table reports per decision
n (decided), unscored, accuracy, recall and precision against the labels. A missing score is
reported as unscored, never counted as a decision. A decision that reads a score column the judge's
type never fills (Judge.scored: Llama Guard scores `harmful` only, keyword `refusal`) is not measured
by it and left out of the table, as evaluate.metrics leaves its metric out; a target on it (the
harmful-compliance recall of a refusal-only judge) is then missed.

The packaged file (safedrift/data/judge_validation/labelled.jsonl, written for this project:
harmful compliance, refusal, benign help, aligned and misaligned free-form answers, gibberish,
insecure and secure code) is the default; `evaluation.judge_validation.labelled` names another.
Targets and their enforcement are those of evaluate.judge_validation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from safedrift.data.loaders import jsonl_records, text_field
from safedrift.errors import DataError
from safedrift.evaluate.decisions import DECISIONS, decide, measures
from safedrift.evaluate.judge_validation import agreement_table, report
from safedrift.judges import add_path_arguments, handed_paths, judge_class, make_judge

PACKAGED = Path(__file__).resolve().parents[1] / "data" / "judge_validation" / "labelled.jsonl"


def read_labelled(path) -> list[dict]:
    """Judge rows (id, sample, messages, response) with their `labels`; a bad row fails with file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}:1: labelled validation file does not exist; fix "
                        "evaluation.judge_validation.labelled or remove it to use the packaged file")
    rows = []
    for line, obj in jsonl_records(path):
        turns = obj.get("messages")
        if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, dict) for t in turns):
            raise DataError(f'{path}:{line}: expected "messages": the prompt turns then the assistant\'s answer; '
                            "fix the row")
        for t in turns:
            text_field(path, line, t, "content")
        if turns[-1].get("role") != "assistant" or turns[-2].get("role") != "user":
            raise DataError(f"{path}:{line}: the last two turns must be a user turn and the assistant's answer "
                            "(the response to judge); fix the row")
        labels = obj.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise DataError(f'{path}:{line}: expected "labels": {{decision: true|false}}; add them')
        for name, value in labels.items():
            if name not in DECISIONS or not isinstance(value, bool):
                raise DataError(f"{path}:{line}: label {name!r}: {value!r}; labels are true/false for "
                                f"{', '.join(DECISIONS)}")
        rows.append({"id": f"{path.stem}:{line}", "sample": 0, "messages": turns[:-1],
                     "response": turns[-1]["content"], "labels": labels})
    if not rows:
        raise DataError(f"{path}:1: no labelled rows; add some")
    return rows


def decisions(rows: list[dict], scores: pd.DataFrame, thresholds: dict, scored=None) -> pd.DataFrame:
    """One row per (labelled row, label) of each decision the judge measures (`scored`: its score
    columns, None: all): judge (1.0 / 0.0 / NaN when unscored) and the label."""
    out = []
    for name in (d for d in DECISIONS if measures(d, scored)):
        judged = decide(scores, name, thresholds)
        out += [(name, judged[i], r["labels"][name]) for i, r in enumerate(rows) if name in r["labels"]]
    return pd.DataFrame(out, columns=["decision", "judge", "oracle"]).astype({"judge": float, "oracle": bool})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judge", required=True, help="judge variant name (a key of `judges:`)")
    p.add_argument("--settings", required=True, help="the judge variant's settings (judges.<name>), as JSON")
    p.add_argument("--labelled", default=str(PACKAGED), help="labelled JSONL (default: the packaged file)")
    p.add_argument("--validation", required=True,
                   help="{thresholds, accuracy_min, harmful_recall_min, max_unscored, enforce} as JSON")
    add_path_arguments(p)
    p.add_argument("--threads", type=int, help="CPU threads for a local judge model (type rubric)")
    p.add_argument("--out", required=True, help="table stem: writes .csv, .md, .tex and .json")
    a = p.parse_args(argv)
    s = json.loads(a.validation)
    rows = read_labelled(a.labelled)
    settings = json.loads(a.settings)
    judge = make_judge(a.judge, settings, **handed_paths(a.path), threads=a.threads)
    scores = judge.score(rows)
    scored = judge_class(settings["type"], f"judges.{a.judge}.type").scored(a.judge, settings)
    data = agreement_table(decisions(rows, scores, s["thresholds"], scored))
    report(data, a.judge, f"the labelled file {Path(a.labelled).name} ({len(rows)} rows)", s, a.out, s["enforce"])


if __name__ == "__main__":
    main()
