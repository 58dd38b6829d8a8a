"""Stage `judges.score`: score one subject's generations with one judge variant.

Joins each generation with its eval row (by id) to recover the prompt messages and the
item labels, scores every (prompt, response) and writes one parquet row per generation:
eval_set plus the judge columns (safedrift.judges.COLUMNS). Row counts are checked, never
assumed: a judge that loses a row fails the job, and so does an endpoint judge whose requests got
no reply after every retry (its replies are cached: the rerun asks only those).

A jailbreak row (safedrift.data.attacks) is judged on its plain request (`judge_messages`), as
StrongREJECT grades the forbidden prompt, and an encoding family's response (base64) is decoded
first when it decodes to readable text; otherwise the judge reads the raw response.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from safedrift.data.attacks import judged_response
from safedrift.errors import DataError, SafedriftError
from safedrift.io import atomic_path, read_jsonl
from safedrift.judges import SCORES, add_path_arguments, handed_paths, make_judge


def generation_rows(generations_path, eval_dir) -> list[dict]:
    """Judge rows (id, sample, eval_set, messages, response, item) of a generations file."""
    generations = read_jsonl(generations_path)
    eval_rows: dict[str, dict] = {}
    for name in sorted({g["eval_set"] for g in generations}):
        path = Path(eval_dir) / f"{name}.jsonl"
        if not path.is_file():
            raise DataError(f"{path}:1: eval set {name!r} of {generations_path} does not exist; "
                            "regenerate the eval sets or the generations")
        eval_rows.update({r["id"]: r for r in read_jsonl(path)})
    rows = []
    for line, g in enumerate(generations, 1):
        if g["id"] not in eval_rows:
            raise DataError(f"{generations_path}:{line}: id {g['id']!r} is in no eval set under {eval_dir}; "
                            "the generations are stale, regenerate them")
        source = eval_rows[g["id"]]
        rows.append({"id": g["id"], "sample": g.get("sample", 0), "eval_set": g["eval_set"],
                     "messages": source.get("judge_messages") or source["messages"],
                     "response": judged_response(source.get("item"), g["response"]), "item": source.get("item")})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judge", required=True, help="judge variant name (a key of `judges:`)")
    p.add_argument("--settings", required=True, help="the judge variant's settings (judges.<name>), as JSON")
    p.add_argument("--generations", required=True)
    p.add_argument("--eval-dir", required=True)
    p.add_argument("--out", required=True, help="scores.parquet to write")
    add_path_arguments(p)
    p.add_argument("--threads", type=int, help="CPU threads for a local judge model (type rubric)")
    a = p.parse_args(argv)

    rows = generation_rows(a.generations, a.eval_dir)
    judge = make_judge(a.judge, json.loads(a.settings), **handed_paths(a.path), threads=a.threads)
    scores = judge.score(rows)
    failed = judge.stats.get("failed", 0)
    if failed:
        # scoring them NaN would be for good: the written parquet ends the job, and Snakemake never asks again
        print(json.dumps({"judge": a.judge, "requests": judge.stats}, sort_keys=True))
        raise SafedriftError(f"judge {a.judge}: {failed} of {judge.stats['requested']} requests got no reply after "
                             f"every retry (timeouts, HTTP 408/429/5xx, dropped connections); {a.out} is not written "
                             f"and the replies received are kept in its reply cache, so a rerun asks only what has "
                             f"none; if the same requests keep failing, raise judges.{a.judge}.timeout_s or "
                             f"max_retries, or check the endpoint")
    if len(scores) != len(rows):
        raise SafedriftError(f"judge {a.judge} returned {len(scores)} rows for {len(rows)} generations")
    scores.insert(2, "eval_set", [r["eval_set"] for r in rows])
    with atomic_path(a.out) as tmp:
        scores.to_parquet(tmp, index=False)

    counts = {"rows": len(scores), "unparsed_rows": int((scores["unparsed"] > 0).sum()),
              "unparsed_replies": int(scores["unparsed"].sum())}
    counts["missing"] = {c: int(np.isnan(scores[c]).sum()) for c in SCORES}
    if judge.stats:
        counts["requests"] = judge.stats
    print(json.dumps({"judge": a.judge, **counts}, sort_keys=True))


if __name__ == "__main__":
    main()
