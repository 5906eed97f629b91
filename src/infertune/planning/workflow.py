"""``infertune plan RUN``: value every strategy on a run's prompts, plan at a budget, and the efficiency curve.

Parallel strategies, and Best-of-N with a stop rule, are valued from the run's own samples. With ``--prm`` the
search strategies, and with ``--revision-model`` the revision strategies, are first run on the run's prompts with the
run's model (into RUN/strategies/, resumable; see ``runs``), scored, and valued from there. The plan at ``--budget``
is written to RUN/plan/plan.json; the efficiency curve across ``--curve`` budgets goes with it into summary.json and
a plot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from infertune.planning.coscaling import best_temperature, coscaling_fit, pass_curves_by_temperature, plot_coscaling
from infertune.planning.difficulty import default_verifier, difficulty
from infertune.planning.planner import PLAN_FORMAT, PlanResult, efficiency_curve, plan
from infertune.planning.strategies import ChainLayout, Strategy, StrategyTable, combine, revision_table, run_table
from infertune.planning.strategies import kept_probe_table, stop_table, strategy_table
from infertune.registry import Registry
from infertune.verify import canonical_spec


@dataclass
class PlanConfig:
    """How to plan test-time compute for a run."""

    budget: float = field(default=4.0, metadata={
        "help": "Average compute per prompt the plan may spend, in sample-equivalents (the mean tokens of one "
                "sample when the run records tokens), probes, search rollouts and revision contexts included."})
    curve: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0, 16.0, 32.0, 64.0], metadata={
        "help": "Budgets of the efficiency curve, repeatable."})
    unit: str = field(default="auto", metadata={
        "help": "Cost unit: tokens (generated tokens plus re-read revision context), samples, or auto (tokens "
                "when the run records them)."})
    difficulty: str = field(default="predicted", metadata={
        "help": "predicted (from verifier scores, usable on unlabelled prompts) or oracle (pass@1 from rewards)."})
    verifier: str | None = field(default=None, metadata={"help": "Verifier whose scores predict difficulty "
                                                                 "(default: the first score column)."})
    probe_samples: int = field(default=4, metadata={
        "help": "Predicted difficulty uses each prompt's first PROBE_SAMPLES samples, as eval --plan does on new "
                "prompts; 0: no probes and one bin (the plan is one strategy for every prompt, which a stop rule "
                "still adapts per prompt)."})
    probe_temperature: float | None = field(default=None, metadata={
        "help": "Temperature of the probe samples (default: the run's lowest)."})
    bins: int = field(default=5, metadata={"help": "Difficulty quantile bins."})
    folds: int = field(default=5, metadata={"help": "Cross-validation folds over prompts."})
    guard: bool = field(default=True, metadata={
        "help": "Fall back to uniform Best-of-N wherever cross-validation does not show the plan beating it."})
    guard_confidence: float = field(default=0.95, metadata={
        "help": "The guard keeps an adaptive plan only if it beats uniform Best-of-N at its spend in this share of "
                "bootstrap resamples of the inner cross-validation's prompts (a one-sided test); 0: on the mean "
                "alone."})
    fallback_se: float = field(default=1.0, metadata={
        "help": "Where the guard falls back, uniform Best-of-N at the smallest N whose accuracy is within this many "
                "paired standard errors of the most accurate affordable N (0: the most accurate N)."})
    seed: int = field(default=0, metadata={"help": "Seed of the fold split, strategy runs and Monte-Carlo estimates."})
    bootstrap: int = field(default=400, metadata={
        "help": "Bootstrap resamples of prompts for the efficiency ratio's interval; each re-runs the whole "
                "cross-validated plan, guard included (their cost grows with prompts and strategies: 0.1 to 0.25 s "
                "each for 200 prompts and 900 strategies on a 2-core CPU; 0: no interval)."})
    stop_quantiles: list[float] = field(default_factory=lambda: [0.5, 0.75, 0.9, 0.95, 0.98], metadata={
        "help": "Best-of-N with a stop rule (draw until the verifier scores a sample at least a threshold, at most "
                "N): thresholds at these quantiles of the verifier's scores over the run, repeatable."})
    stop_caps: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64], metadata={
        "help": "Caps N of the stop-rule strategies (those within the run's samples per prompt), repeatable."})
    stop_rule: bool = field(default=True, metadata={"help": "Value the stop-rule strategies at all."})
    keep_probes: bool = field(default=True, metadata={
        "help": "With probes, also offer Best-of-N and its stop rule keeping the probes as candidates: the probes "
                "plus N fresh samples for the cost of N (N = 0: answer with the best probe); the stop rule looks "
                "at the probes first."})
    prm: str | None = field(default=None, metadata={
        "help": "Process reward model folder (infertune prm): adds beam search and lookahead strategies, run on the "
                "run's prompts with its model."})
    search_budgets: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64], metadata={
        "help": "N of the beam-search strategies (multiples of --width), repeatable."})
    width: int = field(default=4, metadata={"help": "Beam width M: continuations per kept partial answer."})
    lookahead: int = field(default=1, metadata={"help": "Rollout steps k of the lookahead strategies (0: none)."})
    lookahead_budgets: list[int] = field(default_factory=lambda: [4, 8], metadata={
        "help": "N of the lookahead strategies, repeatable."})
    search_select: str = field(default="wmaj:prm", metadata={
        "help": "How search chooses its final answer: wmaj:<verifier> (weighted Best-of-N) or bon:<verifier>, by "
                "the PRM (prm, prm-min, prm-prod) or a verifier of --score-with (e.g. learned)."})
    search_runs: int = field(default=2, metadata={
        "help": "Independent runs of each search strategy per prompt (its per-prompt value is their mean)."})
    max_steps: int = field(default=16, metadata={"help": "Most steps of a searched answer."})
    max_step_tokens: int = field(default=32, metadata={"help": "Most tokens of one step."})
    revision_model: str | None = field(default=None, metadata={
        "help": "Revision model folder (infertune train-revisions): adds sequential-revision strategies."})
    chains: int = field(default=16, metadata={"help": "Most parallel revision chains valued (C)."})
    attempts: int = field(default=4, metadata={"help": "Most attempts per revision chain valued (L)."})
    window: int = field(default=2, metadata={"help": "Earlier attempts a revision sees."})
    score_with: list[str] = field(default_factory=list, metadata={
        "help": "Verifiers (as eval --verifier takes them, e.g. learned=PATH) that score revision attempts for "
                "selection, repeatable."})
    strategy_temperature: float | None = field(default=None, metadata={
        "help": "Sampling temperature of search and revisions (default: the probe temperature)."})

    def __post_init__(self) -> None:
        if self.difficulty not in ("predicted", "oracle"):
            raise ValueError(f"difficulty must be predicted or oracle, got {self.difficulty!r}")
        if not 0 < self.budget < float("inf") or self.bins < 1 or self.folds < 2:
            raise ValueError("budget must be a finite number > 0, bins >= 1 and folds >= 2")
        if self.probe_samples < 0:
            raise ValueError("probe_samples must be at least 0")
        if self.unit not in ("auto", "tokens", "samples"):
            raise ValueError(f"unit must be auto, tokens or samples, got {self.unit!r}")
        if any(n % self.width for n in self.search_budgets + self.lookahead_budgets):
            raise ValueError(f"search budgets must be multiples of the width {self.width}")
        if any(not 0 <= q <= 1 for q in self.stop_quantiles) or any(c < 1 for c in self.stop_caps):
            raise ValueError("stop_quantiles must lie in [0, 1] and stop_caps be at least 1")
        if self.search_select.split(":", 1)[0] not in ("wmaj", "bon") or ":" not in self.search_select:
            raise ValueError(f"search_select must be wmaj:<verifier> or bon:<verifier>, got {self.search_select!r}")


@dataclass
class PlanRun:
    """What ``infertune plan`` computes for a stored run."""

    result: PlanResult
    coscaling: list[dict]
    best_temperature: list[dict]
    pass_curves: dict
    prompts: int
    n: int
    curve: list[dict] = field(default_factory=list)
    strategies: dict = field(default_factory=dict)  # per method: strategies valued, and run-valued variances


def _read_pool(store):
    from infertune.store import iter_tasks_and_temperatures

    table_all = store.read()
    pairs = list(iter_tasks_and_temperatures(table_all))
    tasks_seen = sorted({task for task, _ in pairs})
    if len(tasks_seen) != 1:
        raise ValueError(f"{store.path}: plan needs a run of one task, found {tasks_seen}")
    samples = {t: store.scored(temperature=t, task=tasks_seen[0]) for _, t in pairs}
    common = set.intersection(*(set(s.prompt_ids) for s in samples.values()))
    if any(len(common) != len(s.prompt_ids) for s in samples.values()):
        raise ValueError(f"{store.path}: every temperature must cover the same prompts")
    return tasks_seen[0], samples


def strategy_tables(store, config: PlanConfig, task, prompt_ids: list[str], temperature: float, unit: str,
                    log=lambda message: None) -> list[StrategyTable]:
    """Run (or resume) and value the search and revision strategies the config asks for."""
    from infertune.planning.runs import PRM_AGGREGATES, open_policy, run_revisions, run_search, store_name
    from infertune.planning.runs import strategy_dir
    from infertune.scoring import score_store
    from infertune.store import SampleStore
    from infertune.verify import build_verifier
    from infertune.verify.prm import ProcessRewardModel

    if not (config.prm or config.revision_model):
        return []
    if unit != "tokens":
        raise ValueError("search and revision strategies are costed in tokens; the run must record num_tokens")
    meta = store.meta()
    problems = [p for p in task.problems() if p.id in set(prompt_ids)]
    policy = open_policy(meta.get("model", "tiny"), chat=bool(meta.get("chat_template")))
    tables = []
    folder = strategy_dir(store.path)
    verifiers = {v.name: v for v in (build_verifier(spec, task) for spec in config.score_with)}
    if config.prm:
        prm = ProcessRewardModel.load(Path(config.prm))
        chooser = config.search_select.split(":", 1)[1]
        if chooser not in PRM_AGGREGATES and chooser not in verifiers:
            raise ValueError(f"search_select {config.search_select!r}: no verifier {chooser!r}; give it with "
                             "--score-with or choose by the PRM (prm, prm-min, prm-prod)")
        wanted = [Strategy(temperature, config.search_select, n, "beam", width=config.width)
                  for n in config.search_budgets]
        if config.lookahead:
            wanted += [Strategy(temperature, config.search_select, n, "lookahead", width=config.width,
                                lookahead=config.lookahead) for n in config.lookahead_budgets]
        chooser_spec = next((spec for spec in config.score_with if spec.split("=")[0] == chooser), chooser)
        identity = {"prm": str(Path(config.prm).resolve()), "final": chooser_spec}
        for s in wanted:
            target = SampleStore(folder / store_name(s, identity=identity))
            run_search(target, task, problems, policy, prm, s, runs=config.search_runs, seed=config.seed,
                       max_steps=config.max_steps, max_step_tokens=config.max_step_tokens,
                       final=verifiers.get(chooser), identity=identity, log=log)
            score_store(target, task, [])
            tables.append(run_table(s, _aligned(target.scored(temperature=temperature, task=task.name), prompt_ids)))
    if config.revision_model:
        reviser = open_policy(config.revision_model, chat=bool(meta.get("chat_template")))
        layout = ChainLayout(config.chains, config.attempts, temperature, config.window)
        identity = {"reviser": str(Path(config.revision_model).resolve())}
        target = SampleStore(folder / store_name(Strategy(temperature, "maj", 2, "revise", chains=1), config.window,
                                                 identity))
        run_revisions(target, task, problems, policy, reviser, layout, seed=config.seed,
                      max_new_tokens=int((meta.get("sampler_settings") or {}).get("max_new_tokens", 32)),
                      identity=identity, log=log)
        score_store(target, task, list(verifiers.values()))
        samples = _aligned(target.scored(temperature=temperature, task=task.name), prompt_ids)
        tables.append(revision_table(samples, layout, seed=config.seed))
    return tables


def _aligned(samples, prompt_ids: list[str]):
    if samples.prompt_ids != prompt_ids:
        raise ValueError("a strategy store covers other prompts than the run; remove RUN/strategies/ to redo it")
    return samples


def plan_run(store, config: PlanConfig, log=lambda message: None) -> PlanRun:
    """Plan a stored run: strategies valued, the plan, its cross-validated efficiency against uniform Best-of-N
    across budgets, and co-scaling."""
    from infertune.tasks import load

    task_name, samples = _read_pool(store)
    probe = None
    binned = config.difficulty == "oracle" or config.probe_samples > 0
    if config.difficulty == "predicted" and config.probe_samples > 0:
        probe = (min(samples) if config.probe_temperature is None else float(config.probe_temperature),
                 config.probe_samples)
    skip = probe[1] if probe else 0
    parallel = strategy_table(samples, seed=config.seed, skip=skip, unit=config.unit)
    stopping = (stop_table(samples, quantiles=config.stop_quantiles, caps=config.stop_caps, skip=skip,
                           unit=parallel.unit, unit_size=parallel.unit_size) if config.stop_rule else None)
    if stopping is not None:
        parallel = combine([parallel, stopping])
    kept = (kept_probe_table(samples, probe, quantiles=config.stop_quantiles if config.stop_rule else [],
                             caps=config.stop_caps, unit=parallel.unit, unit_size=parallel.unit_size)
            if probe is not None and config.keep_probes else None)
    if kept is not None:
        parallel = combine([parallel, kept])
    ids = parallel.prompt_ids
    spec = store.meta().get("task_spec") or {"name": task_name}
    temperature = (config.strategy_temperature if config.strategy_temperature is not None
                   else (probe[0] if probe else min(samples)))
    extra = strategy_tables(store, config, load(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
                            if config.prm or config.revision_model else None, ids, temperature, parallel.unit, log)
    for t in extra:
        t.unit_size = parallel.unit_size
    table = combine([parallel, *extra]) if extra else parallel
    hardness = (difficulty(samples, config.difficulty, config.verifier, probe=probe) if binned
                else np.zeros(len(ids)))
    probe_costs = None
    if probe is not None:
        s = samples[probe[0]]
        probe_costs = (s.tokens[:, : probe[1]].sum(axis=1).astype(np.float64) if table.unit == "tokens"
                       else np.full(len(ids), float(probe[1])))
        if config.budget * table.unit_size <= probe_costs.mean():
            raise ValueError(f"budget {config.budget:g} leaves nothing beyond the {probe[1]} probe samples predicted "
                             "difficulty draws per prompt (the budget counts them); raise --budget or lower "
                             "--probe-samples")
    options = dict(bins=config.bins if binned else 1, folds=config.folds, seed=config.seed,
                   difficulty_kind=config.difficulty if binned else "none",
                   probe=probe, probe_costs=probe_costs, guard=config.guard, resamples=config.bootstrap,
                   guard_confidence=config.guard_confidence, fallback_se=config.fallback_se)
    result = plan(table, hardness, config.budget, **options)
    if config.curve:
        log(f"efficiency curve: {len(config.curve)} budgets, {config.bootstrap} bootstrap refits each")
    curve = efficiency_curve(table, hardness, [b for b in config.curve], log=log, **options)
    verifier = config.verifier or (default_verifier(next(iter(samples.values())))
                                   if config.difficulty == "predicted" and binned else None)
    result.spec.update(verifier=verifier, task=task_name, format=PLAN_FORMAT,
                       cross_validated_accuracy=result.adaptive_accuracy,
                       components=_components(config, store.meta(), temperature))
    if result.probe is not None:
        result.spec["probe"] = {"temperature": result.probe[0], "samples": result.probe[1]}
    pass_curves = pass_curves_by_temperature(samples)
    fits = coscaling_fit(pass_curves)
    n = next(iter(samples.values())).n
    return PlanRun(result, fits, best_temperature(fits, [2**i for i in range(12) if 2**i <= 16 * n]), pass_curves,
                   len(hardness), n, curve, _describe(table))


def _components(config: PlanConfig, meta: dict, temperature: float) -> dict:
    """What applying the plan needs besides the policy: the PRM, the revision model and their settings."""
    return {"verifier_specs": {Registry.split(spec)[0]: canonical_spec(spec) for spec in config.score_with},
            "prm": str(Path(config.prm).resolve()) if config.prm else None,
            "revision_model": str(Path(config.revision_model).resolve()) if config.revision_model else None,
            "window": config.window, "max_steps": config.max_steps, "max_step_tokens": config.max_step_tokens,
            "policy": meta.get("model"), "strategy_temperature": temperature}


def _describe(table: StrategyTable) -> dict:
    out: dict = {}
    for j, s in enumerate(table.strategies):
        row = out.setdefault(s.method, {"strategies": 0, "mean_value": [], "mc_variance": []})
        row["strategies"] += 1
        if s.method in ("beam", "lookahead"):
            row["mean_value"].append(float(table.values[:, j].mean()))
            if table.variances is not None and not np.isnan(table.variances[:, j]).all():
                row["mc_variance"].append(float(np.nanmean(table.variances[:, j])))
    for row in out.values():
        row["mean_value"] = row["mean_value"] or None
        row["mc_variance"] = row["mc_variance"] or None
    return out


def write_plan(run: PlanRun, folder: Path) -> dict[str, Path]:
    """RUN/plan/plan.json (the plan ``eval --plan`` applies), summary.json, curve.png and coscaling.png."""
    from infertune.planning.plots import plot_efficiency_curve

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"plan": folder / "plan.json", "summary": folder / "summary.json", "curve": folder / "curve.png",
             "plot": folder / "coscaling.png"}
    paths["plan"].write_text(json.dumps(_json_safe(run.result.spec), indent=1))
    summary = {k: v for k, v in asdict(run.result).items() if k not in ("assignments",)}
    record = {"plan": summary, "curve": run.curve, "strategies": run.strategies, "coscaling": run.coscaling,
              "best_temperature": run.best_temperature}
    paths["summary"].write_text(json.dumps(_json_safe(record), indent=1, default=float))
    plot_efficiency_curve(run.curve, paths["curve"])
    plot_coscaling(run.pass_curves, run.coscaling, run.best_temperature, paths["plot"])
    return paths


def _json_safe(value):
    """``value`` with every non-finite float written as the string "inf", "-inf" or "nan": JSON has no infinity,
    and the hardest bin's difficulty is +inf when a probe scored −inf (an empty completion, by confidence)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return _json_safe(value.tolist())
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return str(float(value))
    return value
