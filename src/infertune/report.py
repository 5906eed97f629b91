"""Tables and plots of a run's inference-scaling curves, written next to the run.

A person reads the table (k = 1, 2, 4, ..., n with intervals); the PNG shows the whole curve, one panel per metric
and one line per temperature, because where curves cross (BoN overtaken by majority vote, a low temperature
winning at k = 1 and losing at k = 64) is what a table of a few k hides.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from infertune.evaluation import Curve, EvalConfig, evaluate, report_ks
from infertune.store import SampleStore, iter_tasks_and_temperatures

METRIC_TITLES = {
    "pass": "pass@k (oracle)",
    "bon": "Best-of-k by verifier",
    "maj": "majority vote (maj@k)",
    "wmaj": "weighted majority vote",
}


@dataclass
class ReportConfig(EvalConfig):
    """What the report computes and where it goes."""

    out: str | None = field(default=None, metadata={"help": "Output folder (default: RUN/report)."})
    plots: bool = field(default=True, metadata={"help": "Write PNG plots of the curves."})


@dataclass
class Section:
    """The curves of one task at one temperature."""

    task: str
    temperature: float
    prompts: int
    n: int
    dropped: int
    curves: list[Curve]


@dataclass
class Report:
    run: str
    sections: list[Section]
    seconds: float
    config: ReportConfig

    def rows(self) -> list[dict]:
        """Flat records, one per (task, temperature, metric, verifier, k), for JSON and for other tools."""
        out = []
        for sec in self.sections:
            for c in sec.curves:
                for k in range(1, sec.n + 1):
                    out.append({
                        "task": sec.task, "temperature": sec.temperature, "metric": c.metric,
                        "verifier": c.verifier, "k": k, "mean": float(c.mean[k - 1]),
                        "ci_low": float(c.low[k - 1]), "ci_high": float(c.high[k - 1]),
                        "mc_stderr": float(c.mc_stderr[k - 1]), "exact": c.exact, "prompts": sec.prompts,
                    })
        return out


def build_report(run: str | Path, config: ReportConfig | None = None) -> Report:
    """Compute every curve of every task and temperature in the run's store."""
    config = config or ReportConfig()
    start = time.perf_counter()
    store = SampleStore(run)
    if not store.exists():
        raise FileNotFoundError(f"{run}: no sample store here (expected a '{store.shard_dir.name}/' folder), nor a "
                                f"training run's train_log.csv")
    table = store.read()
    sections = []
    for task, temperature in iter_tasks_and_temperatures(table):
        samples = store.scored(temperature=temperature, task=task)
        sections.append(Section(task, temperature, len(samples.prompt_ids), samples.n, samples.dropped,
                                evaluate(samples, config)))
    if not sections:
        raise ValueError(f"{run}: the store holds no samples")
    return Report(str(run), sections, time.perf_counter() - start, config)


def report_run(run: str | Path, config: ReportConfig | None = None):
    """The report a run folder supports: the inference-scaling curves of its sample store (``Report``), or, for a
    folder written by ``infertune train``, the telemetry of its steps (``training_report.TrainingReport``)."""
    from infertune.training_report import build_training_report, is_training_run

    config = config or ReportConfig()
    if not SampleStore(run).exists() and is_training_run(run):
        return build_training_report(run, out=config.out, plots=config.plots)
    return build_report(run, config)


def write_report(report: Report, out: str | Path | None = None) -> dict[str, Path]:
    """Write report.json, table.md and (if enabled) one PNG per task; returns the paths written."""
    folder = Path(out or report.config.out or Path(report.run) / "report")
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    payload = {"run": report.run, "seconds": report.seconds, "config": asdict(report.config),
               "sections": [{"task": s.task, "temperature": s.temperature, "prompts": s.prompts, "n": s.n,
                             "dropped_rows": s.dropped,
                             "notes": {c.label: c.note for c in s.curves if c.note}} for s in report.sections],
               "rows": report.rows()}
    written["json"] = folder / "report.json"
    written["json"].write_text(json.dumps(payload, indent=1))
    written["markdown"] = folder / "table.md"
    written["markdown"].write_text(markdown_table(report))
    if report.config.plots:
        for task in sorted({s.task for s in report.sections}):
            path = folder / f"curves-{_slug(task)}.png"
            plot_curves([s for s in report.sections if s.task == task], path, title=task)
            written[f"plot:{task}"] = path
    return written


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def _cell(c: Curve, k: int) -> str:
    return f"{c.mean[k - 1]:.3f} [{c.low[k - 1]:.3f}, {c.high[k - 1]:.3f}]"


def markdown_table(report: Report) -> str:
    lines = [f"# infertune report: {report.run}", ""]
    level = int(round(report.config.confidence * 100))
    for sec in report.sections:
        ks = report_ks(sec.n)
        lines += [f"## {sec.task}, temperature {sec.temperature:g}: {sec.prompts} prompts x n = {sec.n}", "",
                  f"Mean over prompts with {level}% bootstrap intervals over prompts.", ""]
        lines.append("| metric | " + " | ".join(f"k={k}" for k in ks) + " |")
        lines.append("|---|" + "---|" * len(ks))
        for c in sec.curves:
            lines.append(f"| {c.label} | " + " | ".join(_cell(c, k) for k in ks) + " |")
        notes = [f"- {c.label}: {c.note}" for c in sec.curves if c.note]
        notes += [f"- {c.label}: Monte-Carlo estimate, largest standard error of the mean "
                  f"{c.mc_stderr.max():.4f}" for c in sec.curves if not c.exact]
        if sec.dropped:
            notes.append(f"- {sec.dropped} rows beyond the first n = {sec.n} samples of each prompt were not used")
        lines += [""] + notes + [""]
    return "\n".join(lines)


def render(report: Report, console=None) -> None:
    """Print the report's tables and a short summary to the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for sec in report.sections:
        ks = report_ks(sec.n)
        level = int(round(report.config.confidence * 100))
        table = Table(title=f"{sec.task} @ T={sec.temperature:g}  ({sec.prompts} prompts, n={sec.n})",
                      caption=f"± half the {level}% bootstrap interval; * Monte-Carlo estimate",
                      title_justify="left", caption_justify="left")
        table.add_column("metric", style="bold", no_wrap=True)
        for k in ks:
            table.add_column(f"k={k}", justify="right", no_wrap=True)
        for c in sec.curves:
            table.add_row(c.label + ("" if c.exact else "*"),
                          *[f"{c.mean[k - 1]:.3f}\n[dim]±{(c.high[k - 1] - c.low[k - 1]) / 2:.3f}[/dim]"
                            for k in ks])
        console.print(table)
    console.print(summary_sentences(report))


def summary_sentences(report: Report) -> str:
    """A few sentences a person can read: what N samples buy with each selection rule."""
    out = []
    for sec in report.sections:
        by = {c.label: c for c in sec.curves}
        n = sec.n
        p = by["pass"]
        text = (f"{sec.task} at T={sec.temperature:g}: one sample is right {p.mean[0]:.1%} of the time; "
                f"some sample of {n} is right {p.mean[n - 1]:.1%} (pass@{n}).")
        selectors = [c for c in sec.curves if c.metric != "pass"]
        if selectors:
            best = max(selectors, key=lambda c: c.mean[n - 1])
            text += (f" The best way to pick one of {n} is {best.label} at {best.mean[n - 1]:.1%}"
                     f" [{best.low[n - 1]:.1%}, {best.high[n - 1]:.1%}].")
            for c in selectors:
                peak = int(np.argmax(c.mean)) + 1
                # Only a fall whose intervals at the peak and at k=n do not overlap is worth a sentence.
                if peak < n and c.high[n - 1] < c.low[peak - 1]:
                    text += (f" {c.label} peaks at k={peak} ({c.mean[peak - 1]:.1%}) and falls to "
                             f"{c.mean[n - 1]:.1%} at k={n}: more samples hurt it.")
        out.append(text)
    out.append(f"Computed in {report.seconds:.1f} s.")
    return "\n".join(out)


def plot_curves(sections: list[Section], path: Path, title: str = "") -> None:
    """One panel per metric (and verifier), accuracy against k on a log2 axis, one line per temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    for sec in sections:
        for c in sec.curves:
            if c.label not in labels:
                labels.append(c.label)
    cols = min(3, len(labels))
    rows = (len(labels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, sharey=True)
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, max(len(sections), 1)))
    for ax, label in zip(axes.ravel(), labels):
        metric, _, verifier = label.partition(":")
        for color, sec in zip(colors, sections):
            curve = next((c for c in sec.curves if c.label == label), None)
            if curve is None:
                continue
            k = np.arange(1, sec.n + 1)
            ax.plot(k, curve.mean, color=color, label=f"T={sec.temperature:g}")
            ax.fill_between(k, curve.low, curve.high, color=color, alpha=0.2, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_title(METRIC_TITLES.get(metric, metric) + (f"\nverifier: {verifier}" if verifier else ""),
                     fontsize=10)
        ax.set_xlabel("k (samples)")
        ax.grid(True, alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in axes.ravel()[len(labels):]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title + "  (bands: bootstrap intervals over prompts)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
