"""The ``infertune`` command line: each command builds its config from the options, calls one library workflow and
renders what it returns. No workflow lives here; everything a command does can be called from Python."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from infertune.cli_config import with_config
from infertune.demo import DemoConfig
from infertune.planning import PlanConfig
from infertune.progress import console_progress
from infertune.report import ReportConfig
from infertune.sampling import SampleConfig
from infertune.scoring import ScoreConfig
from infertune.store import StoreError
from infertune.synthetic import SyntheticConfig
from infertune.train import TrainConfig
from infertune.workflows import EvalRunConfig, PRMRunConfig, RevisionRunConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Measure and fine-tune language models for the inference strategy they will be used with.")


@app.callback()
def _options(allow_unisolated: bool = typer.Option(
        False, "--allow-unisolated", help="Where no sandbox isolation works, run model-written code with resource "
        "limits only instead of refusing (same as INFERTUNE_ALLOW_UNISOLATED=1; see `infertune doctor`).")) -> None:
    if allow_unisolated:
        from infertune.workflows import allow_unisolated_runs

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


@app.command()
@with_config(ReportConfig)
def report(run: Path = typer.Argument(..., help="Run folder holding a sample store, or a training run's folder."),
           config: ReportConfig = None) -> None:
    """Tables and plots of pass@k, BoN@k, maj@k and weighted maj@k for every k, with bootstrap intervals; on a
    training run's folder, its telemetry per step (telemetry.png)."""
    from infertune.report import report_run
    from infertune.views import show_report

    console = _console()
    with _user_errors(console):
        with console.status("reading the run"):
            result = report_run(run, config)
    show_report(result, console)


@app.command()
@with_config(SampleConfig)
def sample(config: SampleConfig = None) -> None:
    """Sample n completions per prompt into a run's store; safe to interrupt and run again."""
    from infertune.sampling import sample_run
    from infertune.views import show_sampling

    console = _console()
    with _user_errors(console):
        show_sampling(sample_run(config, progress=console_progress(console)), config, console)


@app.command("eval")
@with_config(EvalRunConfig)
def eval_command(config: EvalRunConfig = None) -> None:
    """Sample, score and report: the whole inference-scaling curve of a model on a task. Resumable."""
    from infertune.views import show_eval
    from infertune.workflows import eval_run

    console = _console()
    with _user_errors(console):
        outcome = eval_run(config, progress=console_progress(console))
    show_eval(outcome, config, console)


@app.command()
@with_config(TrainConfig)
def train(config: TrainConfig = None) -> None:
    """Fine-tune a model for the inference strategy it will be used with (or a baseline). Resumable."""
    from infertune.views import show_training
    from infertune.workflows import train_run

    console = _console()
    console.print(f"training {config.model} on {config.task} with {config.objective} (n={config.n}, k={config.k})")
    with _user_errors(console):
        outcome = train_run(config, progress=console_progress(console))
    show_training(outcome, console)


@app.command("plan")
@with_config(PlanConfig)
def plan_command(run: Path = typer.Argument(..., help="Run folder holding scored samples (several temperatures "
                                                       "and a verifier column make the most of it)."),
                 config: PlanConfig = None) -> None:
    """Compute-optimal test-time scaling: per-difficulty method (parallel, search against a PRM, revisions),
    strategy, N and temperature under a budget, and the efficiency curve against uniform Best-of-N."""
    from infertune.planning import plan_run, write_plan
    from infertune.store import SampleStore
    from infertune.views import show_plan

    console = _console()
    with _user_errors(console):
        result = plan_run(SampleStore(run), config, log=console.print)
        paths = write_plan(result, run / "plan")
    show_plan(result, config, paths, console)


@app.command()
@with_config(PRMRunConfig)
def prm(config: PRMRunConfig = None) -> None:
    """Train a process reward model for a policy from Monte-Carlo rollouts, and report its AUC per step."""
    from infertune.views import show_prm
    from infertune.workflows import prm_run

    console = _console()
    with _user_errors(console):
        summary = prm_run(config, progress=console_progress(console))
    show_prm(summary, console)


@app.command("train-revisions")
@with_config(RevisionRunConfig)
def train_revisions(config: RevisionRunConfig = None) -> None:
    """Fine-tune a revision model on the policy's own attempts (context: question and wrong attempts; target: a
    correct attempt)."""
    from infertune.workflows import revision_run

    console = _console()
    with _user_errors(console):
        summary = revision_run(config, progress=console_progress(console))
    console.print(f"revision model: {summary['model']} ({summary['examples']} examples from "
                  f"{summary['questions_with_examples']} of {summary['questions']} questions; policy attempts "
                  f"correct {summary['attempt_accuracy']:.3f})")


@app.command()
def serve(model: str = typer.Option("tiny", help="Model: tiny, smollm2 or a local transformers directory."),
          adapter: str = typer.Option(None, help="LoRA adapter directory."),
          host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port to listen on.")) -> None:
    """Serve a local model over an OpenAI-compatible API (completions and chat completions)."""
    from infertune.models import load_sampler
    from infertune.serve import make_server

    sampler, _ = load_sampler(model, backend="hf", adapter=adapter)
    server = make_server(sampler, model, host, port)
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
    from infertune.scoring import score_run
    from infertune.views import show_scoring

    console = _console()
    with _user_errors(console):
        with console.status("scoring"):
            task, summary = score_run(run, config, progress=console_progress(console))
    show_scoring(run, task, summary, console)


@app.command()
@with_config(SyntheticConfig)
def synthetic(out: Path = typer.Argument(..., help="Run folder to write the synthetic samples into."),
              config: SyntheticConfig = None) -> None:
    """Write a built-in synthetic set of scored samples (no model needed) into a run folder."""
    from infertune.store import SampleStore
    from infertune.synthetic import write_run

    console = _console()
    with console.status("writing synthetic samples"):
        added = write_run(SampleStore(out), config)
    console.print(f"{out}: {added} rows added ({config.prompts} prompts x n={config.n} x "
                  f"{len(config.temperatures)} temperatures)")


@app.command()
@with_config(DemoConfig)
def demo(config: DemoConfig = None) -> None:
    """The main job: does fine-tuning for Best-of-N beat the base model and ordinary RL at Best-of-N?

    Base model, learned verifier, RL for one sample (on the reward and on the verifier's score) against the exact Best-of-k gradient (selecting by the verifier, or by the reward), all evaluated on test problems through the sample store; the table, the comparisons with method-level intervals and the findings. Resumes where it stopped.
    """
    from infertune.demo import run_demo
    from infertune.views import show_demo

    console = _console()
    console.rule("infertune demo: does training for Best-of-N beat the base model and RL at Best-of-N?")
    with _user_errors(console):
        result = run_demo(config, progress=console_progress(console))
    show_demo(result, console)


@app.command()
def doctor(self_test: bool = typer.Option(True, "--self-test/--no-self-test",
                                          help="Run the hostile self-test (17 programs, about 10 s).")) -> None:
    """Which sandbox protections model-written code gets on this machine, a hostile self-test, and what to change."""
    from infertune.workflows import sandbox_doctor

    diagnosis = sandbox_doctor(self_test=self_test)
    typer.echo("\n".join(diagnosis.lines()))
    raise typer.Exit(0 if diagnosis.ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
