"""Paper tables: one frame written as CSV (full precision), Markdown (README) and LaTeX (booktabs).

Cells that carry a CI are formatted "value [low, high]" in Markdown and LaTeX, followed by
"(n=57/60)" where the judge left some responses unscored (n decided of the set's size); the CSV
keeps the numbers in separate columns so a reader can recompute anything. Notes (e.g. an eval
judge below its validation targets) follow the table in Markdown and LaTeX.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from safedrift.io import atomic_path


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(value, low, high, digits: int = 2, n=None, total=None) -> str:
    """n, total: decided observations and the set's size; shown as "(n=n/total)" when n < total."""
    partial = f" (n={int(n)}/{int(total)})" if n is not None and total is not None and n < total else ""
    if value is None or math.isnan(value):
        return "–" + partial
    if low is None or math.isnan(low) or (low == value == high):
        return fmt(value, digits) + partial
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]" + partial


# Every character of a display table that pdfLaTeX would not print as itself, in one pass (amssymb:
# \checkmark, \rightleftarrows).
LATEX_CHARS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
               "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": "$<$", ">": "$>$", "|": "$|$",
               "–": "--", "—": "---", "−": "$-$", "Δ": "$\\Delta$", "≥": "$\\geq$", "≤": "$\\leq$", "÷": "$\\div$",
               "×": "$\\times$", "λ": "$\\lambda$", "→": "$\\to$", "✓": "$\\checkmark$", "✗": "$\\times$",
               "⇄": "$\\rightleftarrows$", "é": "\\'e", "±": "$\\pm$"}


def _latex_escape(text: str) -> str:
    text = "".join(LATEX_CHARS.get(c, c) for c in text)
    return re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)  # Markdown bold


def to_latex(display: pd.DataFrame, caption: str, label: str, notes=()) -> str:
    cols = list(display.columns)
    align = "".join("r" if display[c].map(_numeric).all() else "l" for c in cols)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_latex_escape(str(c)) for c in cols) + r" \\", r"\midrule"]
    for _, row in display.iterrows():
        lines.append(" & ".join(_latex_escape(str(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip{{\footnotesize {_latex_escape(note)}}}" for note in notes]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def _numeric(x) -> bool:
    try:
        float(str(x).split(" ")[0])
        return True
    except ValueError:
        return False


def to_markdown(display: pd.DataFrame) -> str:
    cols = [str(c) for c in display.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in display.iterrows():
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(data: pd.DataFrame, display: pd.DataFrame, stem: str, caption: str, notes=()) -> None:
    """data: the numbers (CSV); display: formatted strings (Markdown, LaTeX). stem: path without suffix.
    notes: sentences printed under the table (Markdown and LaTeX)."""
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(f"{stem}.csv") as tmp:
        data.to_csv(tmp, index=False)
    with atomic_path(f"{stem}.md") as tmp:
        Path(tmp).write_text(f"{caption}\n\n{to_markdown(display)}" + "".join(f"\n{note}\n" for note in notes))
    with atomic_path(f"{stem}.tex") as tmp:
        Path(tmp).write_text(to_latex(display, caption, "tab:" + Path(stem).name.replace("_", "-"), notes))
