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
    unit = "sample-equivalents" if p.unit == "tokens" else "samples"
    binning = ("one bin, no probes" if p.spec["difficulty"] == "none"
               else f"{p.spec['difficulty']} difficulty, {len(p.per_bin)} bins")
    table = Table(title=f"plan for an average of {config.budget:g} {unit} per prompt ({binning}, {run.prompts} "
                        "prompts)", title_justify="left")
    for column in ("bin", "prompts", "difficulty", "strategy", "cost", "accuracy*", "uniform BoN*"):
        table.add_column(column, justify="right" if column != "strategy" else "left")
    for b in p.per_bin:
        lo, hi = b["difficulty_range"]
        table.add_row(str(b["bin"]), str(b["prompts"]), f"{lo:.2f}-{hi:.2f}" if lo is not None else "-",
                      b["label"], f"{b['cost']:.2f}" if b["cost"] is not None else "-",
                      f"{b['accuracy_in_sample']:.3f}" if b["accuracy_in_sample"] is not None else "-",
                      f"{b['uniform_accuracy_in_sample']:.3f}" if b["uniform_accuracy_in_sample"] is not None else "-")
    table.caption = "* in-sample: the plan fitted on every prompt, measured on them (the lines below are cross-validated)"
    console.print(table)
    if p.unit == "tokens":
        console.print(f"cost unit: tokens (generated, plus re-read revision context); one sample-equivalent = "
                      f"{p.unit_size:.2f} tokens")
    probes = f", {p.probe[1]} probes at T={p.probe[0]:g} included" if p.probe else ""
    console.print(f"cross-validated accuracy: adaptive {p.adaptive_accuracy:.3f} spending {p.adaptive_spend:.2f} "
                  f"{unit} per prompt{probes}, vs uniform {p.uniform_strategy} {p.uniform_accuracy:.3f}; "
                  + _efficiency_words(p.efficiency_ratio, p.efficiency_ratio_ci, p.uniform_budget_to_match, run.n,
                                      p.adaptive_spend, p.efficiency_ratio_ci_capped,
                                      p.efficiency_ratio_ci_over_budget))
    if 0 < p.efficiency_ratio_ci_over_budget and p.efficiency_ratio_ci:
        console.print(f"interval: {p.efficiency_ratio_ci_over_budget:.0%} of the bootstrap resamples left out (a fold "
                      "there could afford no plan at this budget)")
    guard = p.guard
    if guard.get("enabled"):
        console.print(f"guard: {guard['folds_uniform']} of {guard['folds']} folds fell back to uniform Best-of-N; "
                      + ("the saved plan is uniform Best-of-N (cross-validation did not show the adaptive plan "
                         "beating it)" if guard["plan_is_uniform"] else "the saved plan is adaptive"))
    if run.curve:
        curve = Table(title="efficiency curve (cross-validated; ratio = compute uniform Best-of-N needs / plan's "
                            "spend)", title_justify="left")
        for column in ("budget", "spend", "adaptive", "uniform", "ratio", "95% interval", "methods"):
            curve.add_column(column, justify="left" if column == "methods" else "right")
        for r in run.curve:
            if "skipped" in r:
                curve.add_row(f"{r['budget']:g}", "-", "-", "-", "-", "-", "skipped: " + r["skipped"][:60])
                continue
            ci = r["efficiency_ratio_ci"]
            ratio = r["efficiency_ratio"]
            methods = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["methods"].items()))
            curve.add_row(f"{r['budget']:g}", f"{r['adaptive_spend']:.2f}", f"{r['adaptive_accuracy']:.3f}",
                          f"{r['uniform_accuracy']:.3f}", f"{ratio:.2f}" if ratio is not None else "> max",
                          (f"{ci[0]:.2f}-" + ("≥" if r.get("efficiency_ratio_ci_capped", 0) > 0.025 else "")
                           + f"{ci[1]:.2f}") if ci else "-",
                          methods + (" (uniform plan)" if r["plan_is_uniform"] else ""))
        console.print(curve)
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


def _efficiency_words(ratio, interval, match, n: int, spend: float, capped: float = 0.0,
                      over_budget: float = 0.0) -> str:
    if ratio is None:
        words = f"uniform Best-of-N does not match it with any N <= {n} (efficiency ratio above {n / spend:.1f})"
    else:
        words = f"uniform Best-of-N needs {match:.2f} to match it: efficiency ratio {ratio:.2f}"
    if not interval:
        return words + (f" (no interval: in {over_budget:.0%} of the bootstrap resamples a fold afforded no plan at "
                        "this budget)" if over_budget else " (no interval: --bootstrap 0)")
    upper = ("≥" if capped > 0.025 else "") + f"{interval[1]:.2f}"  # resamples uniform never matched: bounds
    return words + (f" (95% bootstrap interval over prompts, the plan refitted on each resample: "
                    f"{interval[0]:.2f}-{upper})")


def show_prm(summary: dict, console: Console) -> None:
    console.print(f"PRM: {summary['prefixes']} step prefixes of {summary['answers_labelled']} answers labelled by "
                  f"rollouts ({summary['rollout_tokens']} tokens); saved to {summary['out']}")
    table = Table(title=f"AUC of the PRM's value at each step against final correctness ({summary['held_out_answers']} "
                        f"held-out answers, accuracy {summary['held_out_accuracy']:.3f})", title_justify="left")
    for column in ("step", "answers", "correct", "AUC"):
        table.add_column(column, justify="right")
    for row in summary["auc_by_step"]:
        table.add_row(str(row["step"]), str(row["answers"]), str(row["positives"]), f"{row['auc']:.3f}")
    console.print(table)
    console.print("whole-answer AUC by aggregate: " + ", ".join(f"{k} {v:.3f}"
                                                                for k, v in summary["aggregate_auc"].items()))


def show_scoring(run, task, summary: dict, console: Console) -> None:
    if summary["rows_scored"] == 0:
        console.print(f"{run}: every row is already scored ({summary['rows']} rows); use --rescore to redo")
        return
    figures = ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if k.startswith("mean_"))
    console.print(f"{run}: scored {summary['rows_scored']} of {summary['rows']} rows with {task.name}: {figures}")


def show_demo(result: dict, console: Console) -> None:
    from infertune.demo.views import show_demo_result

    show_demo_result(result, console)
