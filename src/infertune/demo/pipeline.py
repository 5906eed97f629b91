"""The main job: inference-aware fine-tuning against inference-unaware fine-tuning, end to end, on a laptop CPU.

1. Base policy: the tiny from-scratch Llama taught the arithmetic task by supervised learning until one sample is
   rarely right but one of 32 often is (cached by configuration, so later runs skip it).
2. Verifier: a small character-level transformer classifier (an outcome reward model) fitted on the base's own
   samples of training prompts. It reads the prompt, the completion and the expression's value (as a reward model
   with a calculator tool would), but has to learn from examples that every number must be used exactly once, which
   it does only in part: imperfect for the same reasons real reward models are. Its accuracy and AUC on samples of
   other prompts are reported.
3. Fine-tuning: copies of the base, same sample budget each: RLOO (trains for one sample), the exact Best-of-k
   gradient with the verifier (trains for what Best-of-N will select), and with the reward (pass@k); optionally
   BoN-RLB. Several seeds of the whole fine-tuning.
4. Evaluation: held-out problems never trained on, n=32 samples each at the training temperature; pass@k, BoN@k and
   maj@k for every k with bootstrap intervals over prompts.
5. Report: table, plots, results.json, and a paragraph saying what holds and what does not.

Every stage writes its result before the next starts, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from infertune.estimators import bootstrap_mean
from infertune.evaluation import EvalConfig, per_prompt_curves
from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.loading import cache_dir
from infertune.progress import NullProgress, Progress
from infertune.store import Sample, SampleStore
from infertune.tasks import load
from infertune.tasks.splits import split_problems
from infertune.train import TrainConfig, Trainer, TrainRecipe
from infertune.verify.learned_rm import LearnedRewardModel, RewardModelConfig, verifier_quality

SUMMARY_KS = (1, 4, 16, 32)
TASK_OPTIONS = ["size=6000", "numbers=4", "max_number=9", "max_target=99"]


@dataclass
class DemoConfig:
    """Sizes of the demo. The defaults fit 15 minutes on 2 CPU cores with setup included; see the README."""

    out: str = field(default="infertune-demo", metadata={"help": "Folder for every output of the demo."})
    quick: bool = field(default=False, metadata={"help": "The same pipeline at reduced size (under 3 minutes)."})
    seeds: int = field(default=3, metadata={"help": "Independent fine-tuning runs per method."})
    with_bon_rlb: bool = field(default=False, metadata={"help": "Also fine-tune with BoN-RLB (Chow et al.)."})
    base_steps: int = field(default=600, metadata={"help": "Supervised steps that make the base model."})
    base_batch: int = field(default=128, metadata={"help": "Problems per supervised step."})
    base_lr: float = field(default=3e-3, metadata={"help": "Peak learning rate of the base (cosine decay)."})
    verifier_prompts: int = field(default=600, metadata={"help": "Training prompts whose base samples (16 each) fit "
                                                                 "the verifier (three quarters) and measure it."})
    verifier_steps: int = field(default=300, metadata={"help": "Training steps of the verifier."})
    recipe: TrainRecipe = field(default_factory=lambda: TrainRecipe(
        n=16, k=8, temperature=1.0, max_new_tokens=16, steps=100, batch_prompts=16, micro_batch=256, lr=1e-4))
    eval_prompts: int = field(default=300, metadata={"help": "Held-out problems."})
    eval_n: int = field(default=32, metadata={"help": "Samples per held-out problem."})
    bootstrap: int = field(default=2000, metadata={"help": "Bootstrap resamples of prompts for the intervals."})
    seed: int = field(default=0, metadata={"help": "Seed of the whole demo."})

    def resolved(self) -> "DemoConfig":
        """The quick preset overrides sizes; everything else is as given."""
        if not self.quick:
            return self
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(seeds=1, base_steps=300, base_batch=64, verifier_prompts=80, verifier_steps=60, eval_prompts=60,
                      eval_n=32, bootstrap=300)
        values["recipe"] = replace(self.recipe, steps=10, batch_prompts=8, n=8, k=4, micro_batch=64)
        return DemoConfig(**values)


METHODS = [  # (label, objective, verifier)
    ("rloo", "rloo", "reward"),
    ("bon-exact/verifier", "bon-exact", "learned"),
    ("bon-exact/reward", "bon-exact", "reward"),
]


def _methods(config: DemoConfig) -> list[tuple[str, str, str]]:
    return METHODS + ([("bon-rlb", "bon-rlb", "reward")] if config.with_bon_rlb else [])


class Stages:
    """Wall time of each stage, and whether it was computed now or reused."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []

    def run(self, name: str, fn: Callable):
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 2)
        return result


def base_model(config: DemoConfig, task, log: Callable[[str], None], reused: list[str] | None = None) -> Path:
    """The supervised base model, trained once per configuration and cached (``reused`` learns which it was)."""
    key = json.dumps({"task": TASK_OPTIONS, "steps": config.base_steps, "batch": config.base_batch,
                      "lr": config.base_lr, "seed": config.seed, "eval_prompts": config.eval_prompts, "v": 1},
                     sort_keys=True)
    folder = cache_dir() / f"demo-base-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (folder / "model" / "config.json").exists():
        log(f"base model: reusing {folder}")
        if reused is not None:
            reused.append("base_model")
        return folder / "model"
    log(f"base model: supervised training, {config.base_steps} steps x {config.base_batch} problems")
    trainer = Trainer(TrainConfig(task="arith", task_option=TASK_OPTIONS, objective="sft", steps=config.base_steps,
                                  batch_prompts=config.base_batch, micro_batch=config.base_batch, lr=config.base_lr,
                                  lr_schedule="cosine", warmup_steps=min(50, config.base_steps // 10),
                                  eval_prompts=config.eval_prompts, n=1, k=1, max_new_tokens=16,
                                  seed=config.seed, checkpoint_every=0, out=str(folder / "run")), task=task)
    trainer.run()
    tmp = folder / "model-tmp"
    trainer.save_model(tmp)
    tmp.rename(folder / "model")
    return folder / "model"


def _load(path: Path):
    from infertune.models.loading import load as load_model

    loaded = load_model(str(path))
    return loaded.model, loaded.tokenizer


def sample_problems(model, tokenizer, problems, n: int, temperature: float, seed: int):
    sampler = HFSampler(model, tokenizer, max_rows=1024)
    return sampler.sample([p.prompt for p in problems], SamplingParams(n=n, temperature=temperature,
                                                                     max_new_tokens=16, seed=seed))


def fit_verifier(config: DemoConfig, task, base: Path, train_problems, out: Path) -> tuple[LearnedRewardModel, dict]:
    """Fit the reward model on base samples of training prompts; measure it on samples of other training prompts."""
    folder, path = out / "verifier", out / "verifier.json"
    if path.exists() and (folder / "config.json").exists():
        return LearnedRewardModel.load(folder), json.loads(path.read_text())
    model, tok = _load(base)
    rng = np.random.default_rng([config.seed, 17])
    chosen = [train_problems[i] for i in rng.choice(len(train_problems), config.verifier_prompts, replace=False)]
    completions = sample_problems(model, tok, chosen, 16, config.recipe.temperature, seed=config.seed + 101)
    flat_p = [p for p, row in zip(chosen, completions) for _ in row]
    flat_c = [c for row in completions for c in row]
    rewards = np.array(task.rewards(flat_p, [c.text for c in flat_c]))
    cut = len(chosen) * 3 // 4 * 16  # fit on three quarters of the prompts, measure on the rest
    verifier = LearnedRewardModel.fit(flat_p[:cut], flat_c[:cut], rewards[:cut],
                                      RewardModelConfig(steps=config.verifier_steps, seed=config.seed),
                                      view="arith-calculator")
    quality = verifier_quality(verifier(flat_p[cut:], flat_c[cut:]), rewards[cut:])
    quality.update(verifier.describe())
    verifier.save(folder)
    path.write_text(json.dumps(quality, indent=1))
    return verifier, quality


def evaluate_model(model, tokenizer, task, problems, verifier, config: DemoConfig, store_path: Path) -> dict:
    """Per-prompt curves for every k (pass, Best-of-k by the verifier, majority vote) and distinct answers. The
    samples are written, scored, into a sample store (``infertune report`` reopens it) and the curves come from the
    evaluation core, as for ``infertune eval``."""
    completions = sample_problems(model, tokenizer, problems, config.eval_n, config.recipe.temperature,
                                  seed=config.seed + 7919)
    flat_p = [p for p, row in zip(problems, completions) for _ in row]
    flat_c = [c for row in completions for c in row]
    rewards = task.rewards(flat_p, [c.text for c in flat_c])
    scores = verifier(flat_p, flat_c)
    store = SampleStore(store_path)
    store.init(task_spec=task.spec(), model=str(store_path.name))
    with store.writer(flush_rows=10**9) as writer:
        for p, c, r, s in zip(flat_p, flat_c, rewards, scores):
            writer.write(Sample(task=task.name, prompt_id=p.id, sample_index=c.index,
                                temperature=config.recipe.temperature, prompt=p.prompt, completion=c.text,
                                answer=task.extract(c.text), reward=float(r), num_tokens=c.num_tokens,
                                logprob_sum=c.logprob_sum, scores={"learned": float(s)}))
    samples = store.scored()
    order = [samples.prompt_ids.index(p.id) for p in problems]  # back to the problems' order
    curves = per_prompt_curves(samples, EvalConfig(mc_samples=64, maj_method="mc", seed=config.seed),
                               rules=["pass", "bon:learned", "maj"])
    return {"pass": curves["pass"].values[order], "bon": curves["bon:learned"].values[order],
            "maj": curves["maj"].values[order],
            "distinct": np.array([len({c.text for c in row}) for row in completions], dtype=np.float64)}


def _save_curves(path: Path, curves: dict) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **curves)
    tmp.rename(path)


def run_demo(config: DemoConfig, progress: Progress | None = None) -> dict:
    """Run (or resume) the whole demo; returns the results written to results.json."""
    progress = progress or NullProgress()
    log = progress.log
    config = config.resolved()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evals").mkdir(exist_ok=True)
    stages = Stages()
    started = time.perf_counter()
    task = load("arith", **{k: int(v) for k, v in (o.split("=") for o in TASK_OPTIONS)})
    train_problems, held_out = split_problems(task, config.eval_prompts)

    base = stages.run("base_model", lambda: base_model(config, task, log, stages.reused))
    if (out / "verifier.json").exists():
        stages.reused.append("verifier")
    verifier, quality = stages.run("verifier", lambda: fit_verifier(config, task, base, train_problems, out))
    log(f"verifier: accuracy {quality['accuracy']:.3f}, AUC {quality['auc']:.3f} on {quality['samples']} base "
        f"samples of unseen training prompts ({quality['positives']} correct)")

    def evaluated(name: str, make_model: Callable) -> dict:
        """Per-prompt curves of a model, computed once and kept in evals/<name>.npz."""
        path = out / "evals" / f"{name}.npz"
        __import__("shutil").rmtree(out / "evals" / name, ignore_errors=True)  # a store left by an interrupted run
        if path.exists():
            stages.reused.append(name)
            return dict(np.load(path))
        model, tok = make_model()
        curves = stages.run("evaluate", lambda: evaluate_model(model, tok, task, held_out, verifier, config,
                                                               out / "evals" / name))
        _save_curves(path, curves)
        return curves

    results: dict[str, list[dict]] = {"base": [evaluated("base", lambda: _load(base))]}
    log(f"base: pass@1 {results['base'][0]['pass'][:, 0].mean():.3f}, "
        f"pass@{config.eval_n} {results['base'][0]['pass'][:, -1].mean():.3f}")
    for label, objective, verifier_kind in _methods(config):
        results[label] = []
        for s in range(config.seeds):
            name = f"{label.replace('/', '-')}-seed{s}"

            def fine_tune(objective=objective, verifier_kind=verifier_kind, s=s, name=name):
                recipe = config.recipe
                log(f"fine-tuning {label}, seed {s}: {recipe.steps} steps x {recipe.batch_prompts} prompts x "
                    f"n={recipe.n}")
                model, tok = _load(base)
                trainer = Trainer(TrainConfig(
                    task="arith", task_option=TASK_OPTIONS, objective=objective,
                    verifier="learned" if verifier_kind == "learned" else "reward", **{**asdict(recipe), "k": 1 if objective == "rloo" else recipe.k,
                                          "micro_batch": recipe.batch_prompts * recipe.n},
                    eval_prompts=config.eval_prompts, seed=config.seed * 1000 + s,
                    checkpoint_every=max(1, recipe.steps // 2), out=str(out / "train" / name)),
                    model=model, tokenizer=tok, task=task, verifier=verifier if verifier_kind == "learned" else None)
                stages.run("fine_tune", trainer.run)
                return trainer.model, tok

            curves = evaluated(name, fine_tune)
            results[label].append(curves)
            log(f"{label} seed {s}: pass@1 {curves['pass'][:, 0].mean():.3f}, "
                f"pass@{config.eval_n} {curves['pass'][:, -1].mean():.3f}, "
                f"bon@{config.eval_n} {curves['bon'][:, -1].mean():.3f}")

    report = stages.run("report", lambda: summarise(results, config, quality, out))
    report["stages_seconds"] = stages.seconds
    report["reused_from_earlier_runs"] = stages.reused
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    return report


def summarise(results: dict[str, list[dict]], config: DemoConfig, quality: dict, out: Path) -> dict:
    """Summary rows with intervals, per-seed figures, the comparisons the demo is about, plots and findings."""
    n = config.eval_n
    curves_by_model = {}
    summary, per_seed = [], []
    for label, runs in results.items():
        objective = label.split("/")[0] if label != "base" else "none"
        for metric in ("pass", "bon", "maj"):
            # Average the seeds per prompt, then bootstrap over prompts (the held-out prompts are shared).
            per_prompt = np.mean([r[metric] for r in runs], axis=0)
            interval = bootstrap_mean(per_prompt, resamples=config.bootstrap, seed=config.seed)
            curves_by_model[(label, metric)] = interval
            for k in SUMMARY_KS:
                if k <= n:
                    summary.append({"model": label, "objective": objective, "metric": metric, "k": k,
                                    "mean": float(interval.mean[k - 1]), "ci_low": float(interval.low[k - 1]),
                                    "ci_high": float(interval.high[k - 1]), "seeds": len(runs)})
            for s, r in enumerate(runs):
                per_seed.append({"model": label, "seed": s, "metric": metric,
                                 **{f"k{k}": float(r[metric][:, k - 1].mean()) for k in SUMMARY_KS if k <= n}})
        for s, r in enumerate(runs):
            per_seed.append({"model": label, "seed": s, "metric": "distinct_answers",
                             f"k{n}": float(r["distinct"].mean())})

    comparisons = compare(curves_by_model, results, config)
    plot_path = out / "curves.png"
    plot(curves_by_model, [m for m in results], n, plot_path)
    findings = write_findings(comparisons, quality, config)
    return {"summary": summary, "per_seed": per_seed, "comparisons": comparisons, "verifier": quality,
            "findings": findings, "config": asdict(config), "plot": str(plot_path)}


def compare(curves, results, config: DemoConfig) -> dict:
    """The demo's claims at k = n: best inference-aware model against RLOO and against the base."""
    n = config.eval_n
    aware = [m for m in results if m not in ("base", "rloo")]

    def at(model, metric):
        iv = curves[(model, metric)]
        return float(iv.mean[n - 1]), float(iv.low[n - 1]), float(iv.high[n - 1])

    best = max(aware, key=lambda m: at(m, "pass")[0] + at(m, "bon")[0])
    out = {"best_inference_aware": best, "k": n}
    for other in ("rloo", "base"):
        for metric in ("pass", "bon"):
            b, o = at(best, metric), at(other, metric)
            paired = np.mean([r[metric][:, n - 1] for r in results[best]], axis=0) - np.mean(
                [r[metric][:, n - 1] for r in results[other]], axis=0)
            diff_iv = bootstrap_mean(paired, resamples=config.bootstrap, seed=config.seed + 1)
            out[f"{metric}@{n}: {best} - {other}"] = {
                "difference": b[0] - o[0], "intervals_apart": b[1] > o[2],
                "paired_difference_ci": [float(diff_iv.low), float(diff_iv.high)]}
    if "bon-exact/verifier" in results and "bon-exact/reward" in results:
        v, r = at("bon-exact/verifier", "bon"), at("bon-exact/reward", "bon")
        out[f"bon@{n}: verifier-trained - reward-trained"] = {"difference": v[0] - r[0],
                                                             "intervals_apart": v[1] > r[2] or r[1] > v[2]}
    return out


def plot(curves, models: list[str], n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"pass": "pass@k (oracle)", "bon": "Best-of-k by the learned verifier", "maj": "majority vote"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=False)
    colors = dict(zip(models, plt.get_cmap("tab10")(np.arange(len(models)))))
    k = np.arange(1, n + 1)
    for ax, metric in zip(axes, ("pass", "bon", "maj")):
        for model in models:
            iv = curves[(model, metric)]
            ax.plot(k, iv.mean, label=model, color=colors[model], linestyle="--" if model == "base" else "-")
            ax.fill_between(k, iv.low, iv.high, color=colors[model], alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_title(titles[metric])
        ax.set_xlabel("k (samples)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy on held-out problems")
    axes[0].legend(fontsize=8)
    fig.suptitle("Inference-aware vs inference-unaware fine-tuning (bands: 95% bootstrap intervals over prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_findings(comparisons: dict, quality: dict, config: DemoConfig) -> str:
    """One paragraph, generated from the numbers, that says what holds and what does not."""
    n = comparisons["k"]
    best = comparisons["best_inference_aware"]

    def phrase(key: str) -> str:
        c = comparisons[key]
        direction = "beats" if c["difference"] > 0 else "trails"
        sure = "intervals apart" if c["intervals_apart"] else "intervals overlap"
        lo, hi = c["paired_difference_ci"]
        return (f"{direction} it by {abs(c['difference']) * 100:.1f} points ({sure}; paired 95% interval of the "
                f"difference {lo * 100:+.1f} to {hi * 100:+.1f})")

    parts = [
        f"Held-out, {config.eval_prompts} problems x {config.eval_n} samples, mean of {config.seeds} fine-tuning "
        f"seed(s). The best inference-aware model is {best}.",
        f"Against RLOO (trained for one sample) it {phrase(f'pass@{n}: {best} - rloo')} on pass@{n} and "
        f"{phrase(f'bon@{n}: {best} - rloo')} on BoN@{n}.",
        f"Against the base model it {phrase(f'pass@{n}: {best} - base')} on pass@{n} and "
        f"{phrase(f'bon@{n}: {best} - base')} on BoN@{n}.",
    ]
    key = f"bon@{n}: verifier-trained - reward-trained"
    if key in comparisons:
        c = comparisons[key]
        verdict = "beats" if c["difference"] > 0 else "does not beat"
        parts.append(f"Training with the test-time verifier {verdict} training for pass@N on BoN@{n} "
                     f"({c['difference'] * 100:+.1f} points, intervals {'apart' if c['intervals_apart'] else 'overlap'}).")
    parts.append(f"The learned verifier (AUC {quality['auc']:.2f}, accuracy {quality['accuracy']:.2f}, precision "
                 f"{quality['precision']:.2f} on base samples of unseen prompts) is imperfect, so Best-of-N by it "
                 "stays below pass@N.")
    return " ".join(parts)
