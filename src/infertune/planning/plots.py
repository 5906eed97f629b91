"""The efficiency curve as a picture: what the plan saves at each budget, and accuracy against spend."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_efficiency_curve(curve: list[dict], path: Path, title: str = "") -> None:
    """Left: efficiency ratio with its bootstrap interval per budget (1 = no saving). Right: cross-validated accuracy
    of the plan at its real spend against uniform Best-of-N at each N, both in sample-equivalents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in curve if "skipped" not in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    measured = [r for r in rows if r["efficiency_ratio"] is not None]
    if measured:
        x = np.array([r["budget"] for r in measured])
        y = np.array([r["efficiency_ratio"] for r in measured])
        lo = np.array([r["efficiency_ratio_ci"][0] if r["efficiency_ratio_ci"] else v for r, v in zip(measured, y)])
        hi = np.array([r["efficiency_ratio_ci"][1] if r["efficiency_ratio_ci"] else v for r, v in zip(measured, y)])
        # A percentile interval of refitted plans need not contain the point estimate (each resample refits on
        # about 63% distinct prompts), so the interval is drawn from its ends, not as distances from the point.
        left.vlines(x, lo, hi, color="C0", lw=1.2, label="95% bootstrap interval")
        left.plot(x, y, "o-", color="C0", label="adaptive plan")
    for r in rows:
        if r["efficiency_ratio"] is None:
            left.annotate("uniform never matches", (r["budget"], 1.0), fontsize=7, rotation=90)
    left.axhline(1.0, color="grey", lw=0.8)
    left.axhline(2.0, color="grey", lw=0.8, ls="--")
    left.set_xscale("log", base=2)
    left.set_xlabel("budget (sample-equivalents per prompt)")
    left.set_ylabel("efficiency ratio vs uniform Best-of-N")
    left.set_title("compute uniform Best-of-N needs / plan's spend")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    if rows:
        uniform = np.array(max((r["uniform_curve"] for r in rows), key=len))
        right.plot(uniform[:, 1], uniform[:, 2], "-", color="grey", label="uniform Best-of-N")
        right.plot([r["adaptive_spend"] for r in rows], [r["adaptive_accuracy"] for r in rows], "o",
                   label="adaptive plan")
    right.set_xscale("log", base=2)
    right.set_xlabel("spend (sample-equivalents per prompt)")
    right.set_ylabel("accuracy (cross-validated)")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
