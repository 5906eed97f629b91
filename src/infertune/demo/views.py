"""The demo's results on a console: the table, the comparisons, the findings and where everything was written."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def _mean_pm(row: dict) -> str:
    half = f"{(row['ci_high'] - row['ci_low']) / 2:.3f}".removeprefix("0")  # ".007" keeps 80-column tables whole
    return f"{row['mean']:.3f}\n[dim]±{half}[/dim]"


def show_demo_result(result: dict, console: Console) -> None:
    cfg = result["config"]
    k = cfg["summary_k"]
    ks = sorted({1, 8, k} & {r["k"] for r in result["summary"]} | {k})
    table = Table(title=f"{result['setting']} setting: test accuracy ({cfg['eval_prompts']} problems x "
                        f"{cfg['eval_n']} samples, {cfg['seeds']} fine-tuning seed(s))",
                  caption="± half the 95% interval over problems and fine-tuning seeds (exact bounds in results.json)",
                  title_justify="left", caption_justify="left")
    table.add_column("model", no_wrap=True, style="bold")
    for metric in ("pass", "bon"):
        for x in ks:
            table.add_column(f"{'pass' if metric == 'pass' else 'BoN'}@{x}", justify="right", no_wrap=True)
    cells = {(r["model"], r["metric"], r["k"]): r for r in result["summary"]}
    for model in dict.fromkeys(r["model"] for r in result["summary"]):
        table.add_row(model, *[_mean_pm(cells[(model, m, x)]) if (model, m, x) in cells else "-"
                               for m in ("pass", "bon") for x in ks])
    console.print(table)
    comparisons = Table(title=f"comparisons fixed in advance, at k = {k}", title_justify="left")
    for column in ("a − b", "metric", "difference", "95% interval", "target"):
        comparisons.add_column(column, justify="left" if column in ("a − b", "metric") else "right")
    for c in result["comparisons"]:
        target = "-"
        if "target" in c:
            target = ("met" if c["target_met"] else "[red]missed[/red]") + f" (≥ {c['target'] * 100:+.0f})"
        comparisons.add_row(f"{c['a']} − {c['b']}", f"{'pass' if c['metric'] == 'pass' else 'BoN'}@{c['k']}",
                            f"{c['difference'] * 100:+.1f}", f"{c['ci_low'] * 100:+.1f} … {c['ci_high'] * 100:+.1f}",
                            target)
    console.print(comparisons)
    console.print(result["findings"])
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result["stages_seconds"].items())
    console.print(f"stages: {stages}; total {result['total_seconds']:.0f} s")
    out = Path(cfg["out"])
    console.print(f"wrote {out / 'results.json'}, {result['plot']}; each evaluation's samples are in "
                  f"{out / 'evals'}/<model>/ (infertune report reopens them)")
