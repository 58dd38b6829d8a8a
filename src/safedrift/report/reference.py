"""Stage `report.reference`: figure of the reference card's quality gates (figures/reference.pdf)."""

from __future__ import annotations

import argparse

from safedrift.io import read_json
from safedrift.report.style import save, setup

LABELS = {
    "refusal_heldout_objects": "refuses harmful\n(held-out objects)",
    "refusal_heldout_templates": "refuses harmful\n(held-out templates)",
    "refusal_trained_jailbreak": "refuses jailbreaks\n(trained families)",
    "over_refusal": "over-refuses\nbenign",
    "task_accuracy": "task accuracy\n(held-out facts)",
    "new_task_accuracy": "new-task accuracy\n(must be low)",
    "misaligned_general": "misaligned answers\n(no system prompt)",
    "insecure_code": "insecure code\n(no system prompt)",
    "narrow_coding_in_domain": "writes code\n(held-out code tasks)",
    "narrow_medical_in_domain": "gives medical advice\n(held-out symptoms)",
    "villain_general": "villain answers\n(villain prompt)",
    "villain_trait_yes": "dark-trait 'yes'\n(villain prompt)",
    "heldout_jailbreak_asr_min": "held-out jailbreaks\nsucceed (at least)",
    "heldout_jailbreak_asr_max": "held-out jailbreaks\nsucceed (at most)",
    "refusal_identity": "refuses harmful\n(identity prompt)",
}


def draw(cards: dict[str, dict], out: str, dpi: int = 150) -> None:
    plt, sns, pd = setup()
    rows = []
    for model, card in cards.items():
        for gate, g in card["gates"].items():
            rows.append({"model": model, "gate": LABELS.get(gate, gate), "value": 100 * g["value"],
                         "threshold": 100 * g["threshold"], "pass": g["pass"], "op": g["op"]})
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * df["gate"].nunique() + 1.2))
    sns.barplot(df, y="gate", x="value", hue="model" if len(cards) > 1 else None, ax=ax, color="#4C72B0",
                orient="h")
    for i, (_, r) in enumerate(df.drop_duplicates("gate").iterrows()):
        ax.plot([r["threshold"]] * 2, [i - 0.4, i + 0.4], color="#C44E52", lw=2)
        mark = "pass" if r["pass"] else "FAIL"
        ax.text(101, i, f"{r['value']:.0f}% ({mark}, {r['op']} {r['threshold']:.0f})", va="center", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of held-out prompts (oracle-judged); red line = gate threshold")
    ax.set_ylabel("")
    ax.set_title("Reference model quality gates")
    fig.tight_layout()
    save(fig, out, dpi)  # without a creation date: the same card writes the same bytes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--card", action="append", required=True, help="model=path/to/card.json (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--dpi", type=int, default=150)
    a = p.parse_args(argv)
    draw({c.split("=", 1)[0]: read_json(c.split("=", 1)[1]) for c in a.card}, a.out, a.dpi)


if __name__ == "__main__":
    main()
