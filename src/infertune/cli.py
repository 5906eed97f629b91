"""The ``infertune`` command line: thin wrappers that map options onto config dataclasses and print results."""

from __future__ import annotations

import contextlib
import functools
import time
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from infertune.cli_config import with_config
from infertune.pipeline import EvalRunConfig, SampleConfig, sample_run
from infertune.train import TrainConfig
from infertune.report import ReportConfig, build_report, render, write_report
from infertune.scoring import ScoreConfig, build_verifier, score_store, task_for_run
from infertune.store import SampleStore, StoreError
from infertune.demo import DemoConfig
from infertune.planner import PlanConfig
from infertune.synthetic import SyntheticConfig, write_run

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Measure and fine-tune language models for the inference strategy they will be used with.")


@app.callback()
def _options(allow_unisolated: bool = typer.Option(
        False, "--allow-unisolated", help="Where no sandbox isolation works, run model-written code with resource "
        "limits only instead of refusing (same as INFERTUNE_ALLOW_UNISOLATED=1; see `infertune doctor`).")) -> None:
    if allow_unisolated:
        from infertune.tasks.grading.isolation import allow_unisolated_runs

        allow_unisolated_runs()


def _console() -> Console:
    # Messages carry paths a user copies: soft wrapping never breaks them; tables still fit the terminal.
    return Console(soft_wrap=True)


@contextmanager
def _user_errors(console: Console):
    """Bad input (a store, a task, an option) ends the command with its message and exit status 2."""
    try:
        yield
    except (StoreError, FileNotFoundError, ValueError, ImportError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _show_report(result, console: Console) -> None:
    render(result, console)
    for kind, path in write_report(result).items():
        console.print(f"wrote {kind}: {path}")


@app.command()
@with_config(ReportConfig)
def report(run: Path = typer.Argument(..., help="Run folder holding a sample store."),
           config: ReportConfig = None) -> None:
    """Tables and plots of pass@k, BoN@k, maj@k and weighted maj@k for every k, with bootstrap intervals."""
    console = _console()
    with _user_errors(console):
        with console.status("estimating curves"):
            result = build_report(run, config)
    _show_report(result, console)


def _sample_with_progress(config: SampleConfig, console: Console, only: set[str] | None = None,
                          task=None) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TextColumn("prompts"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        job = bar.add_task("sampling", total=None)
        summary = sample_run(config, progress=lambda done, total: bar.update(job, completed=done, total=total),
                             only=only, task=task)
    rate = summary["rows_written"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    console.print(f"{summary['run']}: {summary['rows_written']} new samples in {summary['seconds']:.1f} s "
                  f"({rate:.1f} samples/s); {summary['prompts']} prompts x n={config.n} x "
                  f"{len(config.temperatures)} temperatures")
    return summary


@app.command()
@with_config(SampleConfig)
def sample(config: SampleConfig = None) -> None:
    """Sample n completions per prompt into a run's store; safe to interrupt and run again."""
    console = _console()
    with _user_errors(console):
        _sample_with_progress(config, console)


def _cluster(config: SampleConfig):
    """The Ray session an --executor ray command shares between sampling and scoring (nothing for local)."""
    if config.executor != "ray":
        return contextlib.nullcontext()
    from infertune.ray_executor import RaySession

    return RaySession(config.ray_address, config.ray_cpus)


def _apply_policy(config: EvalRunConfig, console: Console, task, verifiers, score) -> None:
    from rich.table import Table

    from infertune.policy import load_policy, run_policy

    policy = load_policy(config.policy)
    if policy.verifier not in {v.name for v in verifiers}:
        raise ValueError(f"{config.policy}: the policy predicts difficulty and selects with verifier "
                         f"{policy.verifier!r}; add it with --verifier (have {[v.name for v in verifiers]})")
    if policy.task is not None and policy.task != task.name:
        console.print(f"[yellow]note:[/yellow] the policy was planned on {policy.task}, applied to {task.name}")

    def sample(cfg, only):
        return _sample_with_progress(cfg, console, only=only, task=task)["task"]

    summary = run_policy(config, policy, sample=sample, score=score, log=console.print)
    table = Table(title=f"policy {config.policy} on {summary['prompts']} prompts", title_justify="left")
    for column in ("strategy", "prompts", "accuracy"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for label, row in sorted(summary["per_strategy"].items()):
        table.add_row(label, str(row["prompts"]), f"{row['accuracy']:.3f}")
    console.print(table)
    planned = summary["planned_accuracy"]
    console.print(f"accuracy {summary['accuracy']:.3f} with {summary['mean_samples']:.2f} samples per prompt "
                  f"(probes included; the plan's budget was {summary['policy_budget']:g} without probes"
                  + (f", its cross-validated accuracy {planned:.3f}" if planned is not None else "") + ")")
    console.print(f"wrote {config.run_dir() / 'policy' / 'results.jsonl'} and summary.json")


@app.command("eval")
@with_config(EvalRunConfig)
def eval_command(config: EvalRunConfig = None) -> None:
    """Sample, score and report: the whole inference-scaling curve of a model on a task. Resumable."""
    console = _console()
    with _user_errors(console), _cluster(config):
        from infertune.tasks import load
        from infertune.scoring import parse_options

        task = load(config.task, **parse_options(config.task_option))
        verifiers = [build_verifier(spec, task) for spec in config.verifier]
        store = SampleStore(config.run_dir())
        rewards_fn = None
        if config.executor == "ray":
            from infertune.ray_executor import ray_rewards

            rewards_fn = functools.partial(ray_rewards, task)

        def score() -> None:
            with console.status("scoring") as status:
                scored = score_store(store, task, verifiers, progress=lambda m: status.update(f"scoring: {m}"),
                                     rewards_fn=rewards_fn)
            if scored["rows_scored"]:
                console.print(f"scored {scored['rows_scored']} samples: mean reward {scored['mean_reward']:.3f}")

        if config.policy:
            _apply_policy(config, console, task, verifiers, score)
            return
        _sample_with_progress(config, console, task=task)
        score()
        with console.status("estimating curves"):
            result = build_report(store.path, ReportConfig(bootstrap=config.bootstrap, seed=config.seed))
    _show_report(result, console)


@app.command()
@with_config(TrainConfig)
def train(config: TrainConfig = None) -> None:
    """Fine-tune a model for the inference strategy it will be used with (or a baseline). Resumable."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from infertune.train import Trainer

    console = _console()
    try:
        trainer = Trainer(config, log=console.print)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"training {config.model} on {trainer.task.name} with {config.objective} (n={config.n}, "
                  f"k={config.k}) into {trainer.dir}")
    before = trainer.evaluate() if trainer.step == 0 and not trainer.load_checkpoint() else None
    columns = (TextColumn("step"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        job = bar.add_task("", total=config.steps, completed=trainer.step)
        trainer.run(progress=lambda row: bar.update(job, completed=row["step"], description=(
            f"reward {row['reward']:.3f} pass@{config.k} {row['pass_at_k']:.3f} loss {row['loss']:.4f}")))
    after = trainer.evaluate()
    trainer.save_model(trainer.dir / "final")
    keys = [k for k in after if k.startswith(("pass@", "bon@", "maj@"))]
    if before is not None:
        console.print("held-out, before -> after: " + ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" for k in keys))
    else:
        console.print("held-out: " + ", ".join(f"{k} {after[k]:.3f}" for k in keys))
    console.print(f"model saved to {trainer.dir / 'final'}; log in {trainer.dir / 'train_log.csv'}")


@app.command("plan")
@with_config(PlanConfig)
def plan_command(run: Path = typer.Argument(..., help="Run folder holding scored samples (several temperatures "
                                                       "and a verifier column make the most of it)."),
                 config: PlanConfig = None) -> None:
    """Compute-optimal test-time scaling: per-difficulty strategy, N and temperature under a budget."""
    import json

    from rich.table import Table

    from infertune.planner import plot_coscaling, plan_run

    console = _console()
    with _user_errors(console):
        with console.status("planning"):
            result = plan_run(SampleStore(run), config)
    p = result["plan"]
    table = Table(title=f"policy for an average of {config.budget:g} samples per prompt ({config.difficulty} "
                        f"difficulty, {p.bins} bins, {result['prompts']} prompts)", title_justify="left")
    for column in ("bin", "prompts", "difficulty", "strategy", "accuracy", "uniform BoN"):
        table.add_column(column, justify="right" if column != "strategy" else "left")
    for b in p.per_bin:
        lo, hi = b["difficulty_range"]
        table.add_row(str(b["bin"]), str(b["prompts"]), f"{lo:.2f}-{hi:.2f}" if lo is not None else "-",
                      b["label"], f"{b['accuracy']:.3f}" if b["accuracy"] is not None else "-",
                      f"{b['uniform_accuracy']:.3f}" if b["uniform_accuracy"] is not None else "-")
    console.print(table)
    match = (f"uniform selection needs N={p.uniform_budget_to_match} to match it: efficiency ratio "
             f"{p.efficiency_ratio:.2f}" if p.efficiency_ratio is not None else
             f"uniform selection does not match it with any N <= {result['n']} (efficiency ratio above "
             f"{result['n'] / config.budget:.1f})")
    console.print(f"cross-validated accuracy: adaptive {p.adaptive_accuracy:.3f} vs uniform {p.uniform_strategy} "
                  f"{p.uniform_accuracy:.3f}; {match}")
    fit_table = Table(title="co-scaling fit pass@N(T) ≈ exp(a(T)·N^b(T))", title_justify="left")
    for column in ("T", "a", "b", "R²", "max |error|"):
        fit_table.add_column(column, justify="right")
    for f in result["coscaling"]:
        fit_table.add_row(f"{f['temperature']:g}", *(f"{f[k]:.3f}" if f[k] is not None else "-"
                                                      for k in ("a", "b", "r2", "max_abs_error")))
    console.print(fit_table)
    if result["best_temperature"]:
        console.print("best temperature by N (fitted; beyond N=" + str(result["n"]) + " extrapolated): " +
                      ", ".join(f"N={b['n']}: T={b['best_temperature']:g}" for b in result["best_temperature"]))
    out = run / "plan"
    out.mkdir(parents=True, exist_ok=True)
    (out / "policy.json").write_text(json.dumps(p.policy, indent=1))
    summary = {k: v for k, v in p.__dict__.items() if k not in ("assignments",)}
    (out / "plan.json").write_text(json.dumps({"plan": summary, "coscaling": result["coscaling"],
                                               "best_temperature": result["best_temperature"]}, indent=1))
    plot_coscaling(result["pass_curves"], result["coscaling"], result["best_temperature"], out / "coscaling.png")
    console.print(f"wrote {out / 'policy.json'}, {out / 'plan.json'}, {out / 'coscaling.png'}")


@app.command()
def serve(model: str = typer.Option("tiny", help="Model: tiny, smollm2 or a local transformers directory."),
          adapter: str = typer.Option(None, help="LoRA adapter directory."),
          host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port to listen on.")) -> None:
    """Serve a local model over an OpenAI-compatible API (completions and chat completions)."""
    from infertune.models.hf import HFSampler
    from infertune.models.loading import load
    from infertune.serve import make_server

    loaded = load(model, adapter=adapter)
    server = make_server(HFSampler(loaded.model, loaded.tokenizer, name=model), model, host, port)
    _console().print(f"serving {model} at http://{host}:{server.server_address[1]}/v1 (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
@with_config(ScoreConfig)
def score(run: Path = typer.Argument(..., help="Run folder holding a sample store."),
          config: ScoreConfig = None) -> None:
    """Add answers, rewards and verifier score columns to a run's stored completions."""
    console = _console()
    store = SampleStore(run)
    with _user_errors(console):
        task = task_for_run(store, config)
        verifiers = [build_verifier(spec, task) for spec in config.verifier]
        with console.status("scoring") as status:
            summary = score_store(store, task, verifiers, rescore=config.rescore, workers=config.workers,
                                  progress=lambda msg: status.update(f"scoring: {msg}"))
    if summary["rows_scored"] == 0:
        console.print(f"{run}: every row is already scored ({summary['rows']} rows); use --rescore to redo")
        return
    figures = ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if k.startswith("mean_"))
    console.print(f"{run}: scored {summary['rows_scored']} of {summary['rows']} rows with {task.name}: {figures}")


@app.command()
@with_config(SyntheticConfig)
def synthetic(out: Path = typer.Argument(..., help="Run folder to write the synthetic samples into."),
              config: SyntheticConfig = None) -> None:
    """Write a built-in synthetic set of scored samples (no model needed) into a run folder."""
    console = _console()
    with console.status("writing synthetic samples"):
        added = write_run(SampleStore(out), config)
    console.print(f"{out}: {added} rows added ({config.prompts} prompts x n={config.n} x "
                  f"{len(config.temperatures)} temperatures)")


def _mean_pm(row: dict) -> str:
    half = f"{(row['ci_high'] - row['ci_low']) / 2:.3f}".removeprefix("0")  # ".007" keeps 80-column tables whole
    return f"{row['mean']:.3f}\n[dim]±{half}[/dim]"


@app.command()
@with_config(DemoConfig)
def demo(config: DemoConfig = None) -> None:
    """The main job: fine-tune the embedded tiny model with inference-aware and -unaware objectives and compare.

    Builds (or reuses) a base model and a learned verifier, fine-tunes copies with RLOO and with the exact
    Best-of-k gradient (by the verifier, and by the reward), evaluates all on held-out problems with 32 samples each,
    and writes a table, plots and results.json into --out. Resumes where it stopped.
    """
    from rich.table import Table

    from infertune.demo import SUMMARY_KS, run_demo

    console = _console()
    console.rule("infertune demo: does training for Best-of-N beat training for one sample?")
    result = run_demo(config, log=console.print)
    resolved = result["config"]
    table = Table(title=f"held-out accuracy ({resolved['eval_prompts']} problems x {resolved['eval_n']} samples, "
                        f"{resolved['seeds']} seed(s))",
                  caption="± half the 95% bootstrap interval over prompts (exact bounds in results.json)",
                  title_justify="left", caption_justify="left")
    table.add_column("model", no_wrap=True, style="bold")
    table.add_column("metric", no_wrap=True)
    ks = [k for k in SUMMARY_KS if k <= resolved["eval_n"]]
    for k in ks:
        table.add_column(f"k={k}", justify="right", no_wrap=True)
    cells = {(r["model"], r["metric"], r["k"]): r for r in result["summary"]}
    for model in dict.fromkeys(row["model"] for row in result["summary"]):
        for i, metric in enumerate(("pass", "bon", "maj")):
            table.add_row(model if i == 0 else "", metric,
                          *[_mean_pm(cells[(model, metric, k)]) for k in ks],
                          end_section=i == 2)
    console.print(table)
    console.print(result["findings"])
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result["stages_seconds"].items())
    console.print(f"stages: {stages}; total {result['total_seconds']:.0f} s")
    out = Path(resolved["out"])
    console.print(f"wrote {out / 'results.json'}, {result['plot']}")


@app.command()
def doctor(self_test: bool = typer.Option(True, "--self-test/--no-self-test",
                                          help="Run the hostile self-test (17 programs, about 10 s).")) -> None:
    """Which sandbox protections model-written code gets on this machine, a hostile self-test, and what to change."""
    from infertune.tasks.grading.doctor import diagnose

    diagnosis = diagnose(self_test=self_test)
    typer.echo("\n".join(diagnosis.lines()))
    raise typer.Exit(0 if diagnosis.ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
