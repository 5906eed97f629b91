"""The report of a training run: its per-step telemetry (``train_log.csv``) as a figure, a summary and JSON.

``infertune report RUN`` on a folder written by ``infertune train`` lands here. The figure has one panel per
question a run raises: is the policy improving on its own samples (reward, pass@k, Best-of-k by the training
verifier, the verifier's selection accuracy, and the held-out checks of ``eval_log.csv``), is there gradient (the
share of prompts, and of samples, whose weights are not all zero), is it still exploring (distinct correct answers
per prompt, the entropy of the sampled distribution), B-STaR's balance of the two, and the sampling temperature.
Steps are noisy, so each series is drawn raw (thin) and as a moving average (thick). The summary compares the first
and last tenth of the run.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LOG_NAME, EVAL_NAME = "train_log.csv", "eval_log.csv"
PANELS = [
    ("Own samples", ["reward", "pass_at_k", "bon_at_k", "selection_accuracy"]),
    ("Non-zero gradient (share)", ["nonzero_prompts", "nonzero_samples"]),
    ("Distinct correct answers per prompt", ["distinct_correct"]),
    ("Entropy of the sampled distribution (nats/token)", ["entropy"]),
    ("B-STaR balance score", ["balance"]),
    ("Sampling temperature", ["temperature"]),
]
SUMMARY = ["reward", "pass_at_k", "bon_at_k", "nonzero_prompts", "nonzero_samples", "distinct_correct",
           "selection_accuracy", "entropy", "balance", "temperature"]


@dataclass
class TrainingReport:
    run: str
    steps: dict[str, np.ndarray]  # column name -> values per logged step
    evals: dict[str, np.ndarray] = field(default_factory=dict)
    out: str | None = None
    plots: bool = True

    def summary(self) -> dict[str, dict[str, float]]:
        """Per telemetry column: the mean over the first and the last tenth of the steps (at least one step each)."""
        n = len(self.steps.get("step", []))
        width = max(1, n // 10)
        out = {}
        for name in SUMMARY:
            values = self.steps.get(name)
            if values is None or n == 0:
                continue
            out[name] = {"first": _nanmean(values[:width]), "last": _nanmean(values[-width:])}
        return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def is_training_run(run: str | Path) -> bool:
    return (Path(run) / LOG_NAME).exists()


def _read(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    columns: dict[str, np.ndarray] = {}
    for name in rows[0]:
        try:
            columns[name] = np.array([float(r[name]) if r[name] not in ("", None) else np.nan for r in rows])
        except ValueError:
            continue  # a column that is not numeric has no place in the plots
    return columns


def build_training_report(run: str | Path, out: str | None = None, plots: bool = True) -> TrainingReport:
    """Read a training run's step log (and held-out checks, if any)."""
    folder = Path(run)
    if not is_training_run(folder):
        raise FileNotFoundError(f"{run}: no {LOG_NAME} here (not a training run folder)")
    steps = _read(folder / LOG_NAME)
    if not steps:
        raise ValueError(f"{run}: {LOG_NAME} has no steps yet")
    evals = _read(folder / EVAL_NAME) if (folder / EVAL_NAME).exists() else {}
    return TrainingReport(str(run), steps, evals, out, plots)


def write_training_report(report: TrainingReport) -> dict[str, Path]:
    """telemetry.json (summary and every series) and telemetry.png, in RUN/report unless told otherwise."""
    folder = Path(report.out or Path(report.run) / "report")
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"run": report.run, "summary": report.summary(),
               "steps": {k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in report.steps.items()},
               "held_out": {k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in report.evals.items()}}
    written = {"json": folder / "telemetry.json"}
    written["json"].write_text(json.dumps(payload, indent=1))
    if report.plots:
        written["plot"] = folder / "telemetry.png"
        plot_telemetry(report, written["plot"])
    return written


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` steps, ignoring missing values (NaN where a window has none)."""
    finite = np.isfinite(values)
    kernel = np.ones(width)
    total = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(float), kernel, mode="same")
    return np.divide(total, count, out=np.full(values.shape, np.nan), where=count > 0)


def plot_telemetry(report: TrainingReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report.steps["step"]
    width = max(1, len(steps) // 20)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.2), squeeze=False)
    for ax, (title, names) in zip(axes.ravel(), PANELS):
        drawn = False
        for color, name in zip(plt.get_cmap("tab10").colors, names):
            values = report.steps.get(name)
            if values is None or not np.any(np.isfinite(values)):
                continue
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(values, width), color=color, linewidth=1.8, label=name)
            drawn = True
        if title == "Own samples" and "step" in report.evals:
            for marker, name in zip("os^", [c for c in report.evals if c.startswith("pass@")][:3]):
                ax.plot(report.evals["step"], report.evals[name], marker=marker, linestyle="--", color="black",
                        label=f"held-out {name}")
                drawn = True
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if drawn and len(names) + len(report.evals) > 1:
            ax.legend(fontsize=7)
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
    fig.suptitle(f"training telemetry: {report.run}  (thin: per step; thick: moving average over {width})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_training_report(report: TrainingReport, console) -> None:
    """A table of the telemetry at the start and end of the run."""
    from rich.table import Table

    n = len(report.steps["step"])
    table = Table(title=f"{report.run}: {n} steps (first and last tenth of the steps)", title_justify="left")
    for column in ("telemetry", "first", "last"):
        table.add_column(column, justify="left" if column == "telemetry" else "right")
    for name, values in report.summary().items():
        table.add_row(name, f"{values['first']:.3f}", f"{values['last']:.3f}")
    console.print(table)
    if "step" in report.evals:
        last = {k: v[-1] for k, v in report.evals.items() if k != "step"}
        console.print("held-out at step {:g}: ".format(report.evals["step"][-1])
                      + ", ".join(f"{k} {v:.3f}" for k, v in last.items()))
