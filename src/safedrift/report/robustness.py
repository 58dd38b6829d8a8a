"""Stage `report.robustness`: each claim's verdict on every draw of the toy world.

Input: the scorecards (`report.scorecard` CSVs) of the default world and of the robustness
models (the same config on other world seeds, or on the default world trained from other seeds).
Output: `<stem>.{csv,md,tex}`, one row per claim, one column per draw, and how many draws reproduce
it. A claim counts as robust only if it holds on the default world and on the others (DESIGN.md,
"Claims").
"""

from __future__ import annotations

import argparse

import pandas as pd

from safedrift.report.tables import write_table


def verdict_table(scorecards: dict[str, str]) -> pd.DataFrame:
    """scorecards: {draw label: scorecard CSV path} -> one row per claim."""
    columns = {}
    claims = None
    for draw, path in scorecards.items():
        card = pd.read_csv(path).drop_duplicates("id").set_index("id")
        columns[draw] = card["verdict"]
        claims = card[["paper", "claim"]] if claims is None else claims
    table = claims.join(pd.DataFrame(columns)).reset_index()
    table["draws reproduced"] = [f"{sum(v == 'reproduced' for v in row)}/{len(columns)}"
                                  for row in table[list(columns)].itertuples(index=False)]
    return table


def caption(table: pd.DataFrame, draws: list[str]) -> str:
    counts = ", ".join(f"{d}: {(table[d] == 'reproduced').sum()}/{len(table)}" for d in draws)
    everywhere = int((table[draws] == "reproduced").all(axis=1).sum())
    return (f"Claims on other draws of the toy world (reproduced per draw: {counts}; on every draw: "
            f"{everywhere}/{len(table)}).")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scorecard", action="append", required=True, help="DRAW=claims.csv (repeatable)")
    p.add_argument("--out", required=True, help="table stem")
    a = p.parse_args(argv)
    pairs = [s.split("=", 1) for s in a.scorecard]
    labels = [label for label, _ in pairs]
    if len(set(labels)) < len(labels):  # a dict would keep the last scorecard of a label and drop the others
        p.error(f"--scorecard labels must differ; given {labels}")
    scorecards = dict(pairs)
    table = verdict_table(scorecards)
    write_table(table, table, a.out, caption(table, list(scorecards)))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
