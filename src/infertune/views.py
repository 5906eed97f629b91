"""How the command line shows what a workflow returned: tables and sentences on a rich console.

Kept apart from the workflows (which return data and never print) and from the command definitions (which only
parse options), so that each of the three can change without the others.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def show_report(report, console: Console) -> None:
    from infertune.report import render, write_report
    from infertune.training_report import TrainingReport, render_training_report, write_training_report

    if isinstance(report, TrainingReport):
        render_training_report(report, console)
        written = write_training_report(report)
    else:
        render(report, console)
        written = write_report(report)
    for kind, path in written.items():
        console.print(f"wrote {kind}: {path}")


def show_sampling(summary: dict, config, console: Console) -> None:
    rate = summary["rows_written"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    console.print(f"{summary['run']}: {summary['rows_written']} new samples in {summary['seconds']:.1f} s "
                  f"({rate:.1f} samples/s); {summary['prompts']} prompts x n={config.n} x "
                  f"{len(config.temperatures)} temperatures")


def show_eval(outcome, config, console: Console) -> None:
    if outcome.sampled:
        show_sampling(outcome.sampled, config, console)
    if outcome.scored.get("rows_scored"):
        console.print(f"scored {outcome.scored['rows_scored']} samples: mean reward {outcome.scored['mean_reward']:.3f}")
    if outcome.applied_plan is not None:
        show_applied_plan(outcome.applied_plan, config, console)
    if outcome.report is not None:
        show_report(outcome.report, console)


def show_applied_plan(summary: dict, config, console: Console) -> None:
    table = Table(title=f"plan {config.plan} on {summary['prompts']} prompts", title_justify="left")
    for column in ("strategy", "prompts", "accuracy"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for label, row in sorted(summary["per_strategy"].items()):
        table.add_row(label, str(row["prompts"]), f"{row['accuracy']:.3f}")
    console.print(table)
    planned = summary["planned_accuracy"]
    console.print(f"accuracy {summary['accuracy']:.3f} with {summary['mean_samples']:.2f} samples per prompt "
                  f"(probes included; the plan's budget was {summary['plan_budget']:g}, probes included"
                  + (f", its cross-validated accuracy {planned:.3f}" if planned is not None else "") + ")")
    console.print(f"wrote {config.run_dir() / 'applied-plan' / 'results.jsonl'} and summary.json")


def show_training(outcome, console: Console) -> None:
    after = outcome.after
    keys = [k for k in after if k.startswith(("pass@", "bon@", "maj@"))]
    if outcome.before is not None:
        console.print("held-out, before -> after: " + ", ".join(f"{k} {outcome.before[k]:.3f} -> {after[k]:.3f}"
                                                             for k in keys))
    else:
        console.print("held-out: " + ", ".join(f"{k} {after[k]:.3f}" for k in keys))
    console.print(f"model saved to {outcome.model_dir}; log in {outcome.log_path}")


def show_plan(run, config, paths: dict, console: Console) -> None:
    p = run.result
    table = Table(title=f"plan for an average of {config.budget:g} samples per prompt ({config.difficulty} "
                        f"difficulty, {p.bins} bins, {run.prompts} prompts)", title_justify="left")
    for column in ("bin", "prompts", "difficulty", "strategy", "cost", "accuracy*", "uniform BoN*"):
        table.add_column(column, justify="right" if column != "strategy" else "left")
    for b in p.per_bin:
        lo, hi = b["difficulty_range"]
        table.add_row(str(b["bin"]), str(b["prompts"]), f"{lo:.2f}-{hi:.2f}" if lo is not None else "-",
                      b["label"], str(b["cost"]),
                      f"{b['accuracy_in_sample']:.3f}" if b["accuracy_in_sample"] is not None else "-",
                      f"{b['uniform_accuracy_in_sample']:.3f}" if b["uniform_accuracy_in_sample"] is not None else "-")
    table.caption = "* in-sample: the plan fitted on every prompt, measured on them (the line below is cross-validated)"
    console.print(table)
    if p.efficiency_ratio is not None:
        lo, hi = p.efficiency_ratio_ci if p.efficiency_ratio_ci else (float("nan"), float("nan"))
        match = (f"uniform Best-of-N needs {p.uniform_budget_to_match:.2f} samples per prompt to match it: efficiency "
                 f"ratio {p.efficiency_ratio:.2f} (95% bootstrap interval over prompts {lo:.2f}-{hi:.2f})")
    else:
        match = (f"uniform selection does not match it with any N <= {run.n} (efficiency ratio above "
                 f"{run.n / p.adaptive_spend:.1f})")
    probes = f", {p.probe[1]} probes at T={p.probe[0]:g} included" if p.probe else ""
    console.print(f"cross-validated accuracy: adaptive {p.adaptive_accuracy:.3f} spending {p.adaptive_spend:.2f} "
                  f"samples per prompt{probes}, vs uniform {p.uniform_strategy} {p.uniform_accuracy:.3f}; {match}")
    fit_table = Table(title="co-scaling fit pass@N(T) ≈ exp(a(T)·N^b(T))", title_justify="left")
    for column in ("T", "a", "b", "R²", "max |error|"):
        fit_table.add_column(column, justify="right")
    for f in run.coscaling:
        fit_table.add_row(f"{f['temperature']:g}", *(f"{f[k]:.3f}" if f[k] is not None else "-"
                                                      for k in ("a", "b", "r2", "max_abs_error")))
    console.print(fit_table)
    if run.best_temperature:
        console.print(f"best temperature by N (fitted; beyond N={run.n} extrapolated): " +
                      ", ".join(f"N={b['n']}: T={b['best_temperature']:g}" for b in run.best_temperature))
    console.print("wrote " + ", ".join(str(path) for path in paths.values()))


def show_scoring(run, task, summary: dict, console: Console) -> None:
    if summary["rows_scored"] == 0:
        console.print(f"{run}: every row is already scored ({summary['rows']} rows); use --rescore to redo")
        return
    figures = ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if k.startswith("mean_"))
    console.print(f"{run}: scored {summary['rows_scored']} of {summary['rows']} rows with {task.name}: {figures}")


def show_demo(result: dict, console: Console) -> None:
    from infertune.demo.views import show_demo_result

    show_demo_result(result, console)
