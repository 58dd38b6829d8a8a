"""One look for every figure: imported lazily so a stage that draws nothing never loads matplotlib."""

from __future__ import annotations


def setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=1.0)
    # Fonts embedded as TrueType keep the PDFs editable and identical across runs.
    matplotlib.rcParams.update({"pdf.fonttype": 42, "svg.hashsalt": "safedrift", "figure.dpi": 100})
    return plt, sns, pd
