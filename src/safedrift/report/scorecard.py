"""Stage `report.scorecard`: evaluate the claims of `report.claims` and write the scorecard.

Input: the planned tests (JSON from `claims.plan`), the metric rows of every run they compare
and the model's risk-estimator summaries. Output: `<stem>.{csv,md,tex}` (one CSV row per test;
Markdown/LaTeX one line per test under its claim) and a forest plot of every test's effect with
its paired interval (`evaluation.bootstrap.confidence`) and threshold.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from safedrift.evaluate.metrics import judge_free
from safedrift.evaluate.stats import cell_from_records, joint_replicates
from safedrift.io import read_json
from safedrift.report.aggregate import load_rows
from safedrift.report.claims import claim_rows, statistic
from safedrift.report.tables import fmt_ci, write_table

SYMBOL = {"reproduced": "✓ reproduced", "not reproduced": "✗ not reproduced", "opposite": "⇄ opposite",
          "not run": "– not run"}


def load_cell(subjects: list[str], metric: str, cache: dict, max_unscored: float | None = None):
    """(a stats.Cell of `metric` over the subjects' seeds (each subject one seed), its unscored responses,
    all its responses), or the reason there is none: a subject without a single scored row of `metric`
    (a metric name the evaluation does not write, or every answer unscored) would silently drop its seed,
    and one (a seed) with more than `max_unscored` of its `metric` responses unscored by the judge would
    rest the effect on what the judge happened to score (the metrics job checks the judge's share over
    all its metrics, not each one's); the test is then not run."""
    frames = []
    for s in subjects:
        if s not in cache:
            cache[s] = load_rows(s)
        rows = cache[s][cache[s].metric == metric]
        if not rows["value"].notna().any():
            return f"no scored {metric} in {s}"
        unscored = int(rows["value"].isna().sum())
        # a judge-free metric's missing values are the subject's own non-answers (evaluate.metrics.judge_free)
        if max_unscored is not None and not judge_free(metric) and unscored / len(rows) > max_unscored:
            return (f"{unscored} of {len(rows)} {metric} responses unscored in {s} "
                    f"(> evaluation.max_unscored {max_unscored:g})")
        frames.append(rows)
    rows = pd.concat(frames, ignore_index=True)
    cell = cell_from_records(rows["seed"].to_numpy(), rows["id"].to_numpy(), rows["value"].to_numpy())
    return cell, int(rows["value"].isna().sum()), len(rows)


def model_metric(test: dict, model: str, cell: str) -> float:
    if test["metric"] == "probe_auroc":
        return float(read_json(f"results/{model}/risk/probe_test.json")["auroc_test"])
    recall = read_json(f"results/{model}/risk/critic/{cell.split('/')[0]}.json").get("recall")
    return float("nan") if recall is None else float(recall)


def evaluate(tests: list[dict], model: str, bootstrap: dict, max_unscored: float | None = None) -> dict:
    """{(claim, index): effect} for every test that was run, with each cell's unscored and total responses.
    A test whose data turn out missing is marked not run in place (`run` False, `why` the reason): a missing
    score is never a verdict."""
    effects, cache = {}, {}
    for t in tests:
        if not t["run"]:
            continue
        if t["metric"] in ("probe_auroc", "critic_recall"):
            v = model_metric(t, model, t["cells"][0])
            if np.isnan(v):  # the critic's recall is undefined without a harmful training example
                t.update(run=False, why=f"no {t['metric']} for {t['cells'][0]}")
                continue
            effects[(t["claim"], t["index"])] = {"value": v, "low": v, "high": v}
            continue
        loaded = [load_cell(t["subjects"][c], t["metric"], cache, max_unscored) for c in t["cells"]]
        missing = next((c for c in loaded if isinstance(c, str)), None)
        if missing:
            t.update(run=False, why=missing)
            continue
        cells = [cell for cell, _, _ in loaded]
        replicates = joint_replicates(cells, bootstrap["resamples"], bootstrap["seed"])
        if t["stat"] == "ratio" and replicates.points[1] == 0:  # an infinite ratio would pass any at_least
            t.update(run=False, why=f"ratio undefined: {t['metric']} of {t['cells'][1]} is 0")
            continue
        effect = statistic(t, replicates, bootstrap["confidence"])
        if np.isnan(effect["value"]):  # cells with scores, but on no prompt that every cell scored
            t.update(run=False, why=f"no {t['metric']} prompt scored in every cell")
            continue
        effects[(t["claim"], t["index"])] = {**effect, "unscored": [u for _, u, _ in loaded],
                                             "responses": [n for _, _, n in loaded]}
    return effects


def estimate_only(row) -> bool:
    """A test reproduced on its point estimate whose interval does not wholly meet its bounds."""
    within = row["interval_meets_bounds"]
    return row["test_verdict"] == "reproduced" and within is not None and not pd.isna(within) and not bool(within)


def display(rows: pd.DataFrame, confidence: float) -> pd.DataFrame:
    out, last = [], None
    for _, r in rows.iterrows():
        first = r["id"] != last
        last = r["id"]
        diff = f" (Δ CI [{r['diff_low']:.2f}, {r['diff_high']:.2f}])" if r["stat"] == "ratio" else ""
        effect = fmt_ci(r["effect"], r["low"], r["high"]) + diff
        unscored = json.loads(r["unscored"]) if isinstance(r.get("unscored"), str) and r["unscored"] else []
        if any(unscored):  # the responses the effect does not rest on, per cell
            effect += f" (unscored {' vs '.join(f'{u}/{n}' for u, n in zip(unscored, json.loads(r['responses'])))})"
        if isinstance(r.get("why"), str) and r["why"]:
            effect = f"– ({r['why']})"
        out.append({"claim": f"**{r['id']}** ({r['paper']}): {r['claim']}" if first else "",
                    "verdict": SYMBOL[r["verdict"]] if first else "",
                    "test": r["test"], f"effect [{confidence:.0%} CI]": effect,
                    "test verdict": r["test_verdict"] + (" (estimate only)" if estimate_only(r) else "")})
    return pd.DataFrame(out)


def cells_text(cells: list[str]) -> str:
    """'a vs b' for a comparison; for a range over many cells, what varies between them
    ('6 cells: sft, dpo, ... at benign/*/none/b10')."""
    if len(cells) <= 2:
        return " vs ".join(cells)
    parts = [c.split("/") for c in cells]
    varies = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    if len(varies) != 1:
        return f"{len(cells)} cells"
    shared = "/".join("*" if i == varies[0] else v for i, v in enumerate(parts[0]))
    return f"{len(cells)} cells: {', '.join(p[varies[0]] for p in parts)} at {shared}"


STAT_AXES = {"difference": ("difference of cell means (Δ)", 0.0), "ratio": ("ratio of cell means", 1.0),
             "value": ("value", None), "range": ("range (max − min) over cells", None)}


def draw(rows: pd.DataFrame, out: str, dpi: int, confidence: float) -> None:
    """Forest plot: one panel per statistic (differences, ratios, values and ranges have their own
    scales and no-effect lines), each test's effect with its interval, coloured by the test's verdict,
    its threshold as a red tick; the claim's verdict leads its label."""
    from safedrift.report.style import save, setup

    plt, _, _ = setup()
    colors = {"reproduced": "#2a9d8f", "not reproduced": "#e9c46a", "opposite": "#e76f51", "not run": "#bbbbbb"}
    stats = [s for s in STAT_AXES if (rows["stat"] == s).any()]
    heights = [max(int((rows["stat"] == s).sum()), 1) for s in stats]
    fig, axes = plt.subplots(len(stats), 1, figsize=(11.0, 0.3 * len(rows) + 0.9 * len(stats) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, stat in zip(axes[:, 0], stats):
        part = rows[rows["stat"] == stat]
        y = np.arange(len(part))[::-1]
        for yi, (_, r) in zip(y, part.iterrows()):
            if not np.isnan(r["effect"]):
                low, high = (r["diff_low"], r["diff_high"]) if stat == "difference" else (r["low"], r["high"])
                low, high = (r["effect"], r["effect"]) if np.isnan(low) else (low, high)
                ax.errorbar(r["effect"], yi, xerr=[[max(r["effect"] - low, 0)], [max(high - r["effect"], 0)]],
                            fmt="o", color=colors[r["test_verdict"]], ecolor="black", elinewidth=0.8, capsize=2,
                            ms=5)
            for bound in (r.get("at_least"), r.get("at_most")):
                if bound is not None and not np.isnan(bound):
                    ax.plot([bound] * 2, [yi - 0.35, yi + 0.35], color="#C44E52", lw=1.5)
        label, no_effect = STAT_AXES[stat]
        if no_effect is not None:
            ax.axvline(no_effect, color="black", lw=0.6)
        ax.set_yticks(y, [f"{SYMBOL[r['verdict']].split(' ')[0]} {r['id']}: {r['metric']} "
                          f"({cells_text(json.loads(r['cells']))})" for _, r in part.iterrows()], fontsize=6)
        ax.set_ylim(-0.7, len(part) - 0.3)
        ax.set_xlabel(f"{label}, {confidence:.0%} CI; red: threshold", fontsize=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in colors.items()]
    axes[0, 0].legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="test verdict",
                      title_fontsize=6)
    fig.suptitle("Claims: each test's effect; the mark before a label is its claim's verdict", fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", required=True, help="tests planned by report.claims.plan, as JSON")
    p.add_argument("--claims", required=True, help="the config's claims section as JSON")
    p.add_argument("--model", required=True)
    p.add_argument("--bootstrap", required=True, help="evaluation.bootstrap as JSON")
    p.add_argument("--out", required=True, help="table stem (writes .csv, .md, .tex)")
    p.add_argument("--figure", nargs="+", help="forest plot(s) to write (pdf/png by extension)")
    p.add_argument("--dpi", type=int, default=150)
    p.add_argument("--max-unscored", type=float, help="evaluation.max_unscored: a cell with a larger share of "
                                                         "its responses unscored is not run")
    a = p.parse_args(argv)
    tests = json.loads(a.plan)
    claims = json.loads(a.claims)
    bootstrap = json.loads(a.bootstrap)
    confidence = bootstrap["confidence"]
    rows = pd.DataFrame(claim_rows(claims, tests, evaluate(tests, a.model, bootstrap, a.max_unscored)))
    counts = rows.drop_duplicates("id")["verdict"].value_counts()
    caption = (f"Claims scorecard ({a.model}): {int(counts.get('reproduced', 0))} of {rows.id.nunique()} "
               "claims reproduced. Effects are differences (or ratios, values, ranges) of cell means with paired "
               f"{confidence:.0%} intervals over shared prompts (bootstrap) and seeds (jackknife, t quantile); thresholds are fixed in the "
               "config; \"estimate only\": the point estimate meets the test's bound, its interval does not wholly.")
    write_table(rows, display(rows, confidence), a.out, caption)
    for figure in a.figure or []:
        draw(rows, figure, a.dpi, confidence)
    print(display(rows, confidence).to_string(index=False))
    print(", ".join(f"{k}: {int(v)}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
