"""Applying a saved test-time plan (``infertune plan``'s plan.json) to new prompts: ``infertune eval --plan``.

Per prompt: draw the plan's m probe samples, score them with its verifier, compute the predicted difficulty exactly
as ``plan`` did (1 − mean probe score, agreement recomputed among the probes), look up the prompt's bin, and run the
bin's strategy: parallel (draw N samples at indices m .. m + N − 1 and select one by the rule; a strategy that keeps
its probes selects among the probes and those N), Best-of-N with a stop rule (draw from index m on, one sample per
round, until one scores at least the threshold or N are drawn; one that keeps its probes stops at once if a probe
reaches the threshold, and answers with the best of probes and draws), beam search or lookahead against the plan's
PRM, or revision chains with the plan's revision model (each into a store under RUN/strategies/, seeded apart from
the probes). A plan that the guard made uniform, or one made without probes, has no probes and one bin.
``apply_plan`` is the edge that samples, scores (through the callables it is given) and writes.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from infertune.evaluation import selected_accuracy
from infertune.evaluation.rules import one_of_tied
from infertune.planning.difficulty import assign_bins, probe_scores
from infertune.planning.planner import PLAN_FORMAT
from infertune.planning.strategies import ChainLayout, Strategy
from infertune.registry import Registry
from infertune.verify import canonical_spec, compares_samples

FORMATS = ("infertune-plan/1", "infertune-plan/2", "infertune-plan/3", PLAN_FORMAT)


@dataclass(frozen=True)
class TestTimePlan:
    """A validated plan.json: probe settings, difficulty bins, the strategy of each bin and its components."""

    verifier: str | None
    probe_temperature: float
    probe_samples: int  # 0: a uniform plan (no probes, one bin)
    bin_edges: np.ndarray
    strategies: list[Strategy]
    budget: float
    task: str | None
    cross_validated_accuracy: float | None
    components: dict
    unit: str = "samples"
    unit_size: float = 1.0

    def verifiers_needed(self) -> set[str]:
        """Score columns applying the plan reads: the probe verifier and the selection rules' verifiers (search
        selects by its PRM internally)."""
        needed = {self.verifier} if self.probe_samples else set()
        searched_by_prm = ("prm", "prm-min", "prm-prod")
        needed |= {s.rule.split(":", 1)[1] for s in self.strategies if ":" in s.rule and
                   (s.method in ("parallel", "sequential", "revise") or s.rule.split(":", 1)[1] not in searched_by_prm)}
        return needed

    def strategy_for(self, hardness: np.ndarray) -> list[Strategy]:
        return [self.strategies[b] for b in assign_bins(np.asarray(hardness, dtype=np.float64), self.bin_edges)]


def stop_rule_verifier_mismatch(plan: TestTimePlan, specs: list[str]) -> str | None:
    """Why the given ``--verifier`` specs cannot apply the plan's stop rules, or None. A stop rule compares a
    verifier's score with a fixed threshold, so unlike Best-of-N (which only ranks) it needs the very verifier whose
    scores the threshold was taken from: where the plan recorded that verifier's spec, the one given must match."""
    recorded = plan.components.get("verifier_specs") or {}
    given = {Registry.split(spec)[0]: canonical_spec(spec) for spec in specs}
    for s in plan.strategies:
        name = s.rule.split(":", 1)[1] if s.method == "sequential" else None
        if name in recorded and name in given and given[name] != recorded[name]:
            return (f"the plan stops when verifier {name!r} scores a sample at least {s.threshold:g}, a threshold "
                    f"on the scores of {recorded[name]!r}; --verifier gives {given[name]!r}")
    return None


def load_plan(path: str | Path) -> TestTimePlan:
    """Read and check a plan file; errors name the file and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such plan file (infertune plan RUN writes RUN/plan/plan.json)")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc

    def field(name: str, kind: type | tuple):
        if name not in raw:
            raise ValueError(f"{path}: missing field '{name}'")
        if not isinstance(raw[name], kind):
            raise ValueError(f"{path}: field '{name}' should be {getattr(kind, '__name__', kind)}, got {raw[name]!r}")
        return raw[name]

    if raw.get("format") not in FORMATS:
        raise ValueError(f"{path}: field 'format' is {raw.get('format')!r}, expected {PLAN_FORMAT!r} (a plan "
                         "from this version of infertune plan)")
    kind = field("difficulty", str)
    if kind not in ("predicted", "none"):
        raise ValueError(f"{path}: field 'difficulty' is {kind!r}; only a plan made with predicted "
                         "difficulty can be applied to unlabelled prompts (plan --difficulty predicted)")
    probe_t, probe_m = 0.0, 0
    if kind == "predicted":
        probe = field("probe", dict)
        try:
            probe_t, probe_m = float(probe["temperature"]), int(probe["samples"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: field 'probe' needs 'temperature' and 'samples', got {probe!r}") from exc
    edges = np.asarray(field("bin_edges", list), dtype=np.float64)
    strategies = []
    for i, s in enumerate(field("strategies", list)):
        where = f"{path}: field 'strategies'[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"{where} should be an object, got {s!r}")
        threshold = s.get("threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not np.isfinite(threshold)):
            raise ValueError(f"{where}: 'threshold' should be a finite number, got {threshold!r}")
        keeps = s.get("keeps_probes", False)
        if not isinstance(keeps, bool):
            raise ValueError(f"{where}: 'keeps_probes' should be true or false, got {keeps!r}")
        try:
            strategy = Strategy(float(s["temperature"]), str(s["rule"]), int(s["n"]), str(s.get("method", "parallel")),
                                int(s.get("width", 0)), int(s.get("lookahead", 0)), int(s.get("chains", 0)),
                                None if threshold is None else float(threshold), keeps)
        except KeyError as exc:
            raise ValueError(f"{where} needs temperature, rule and n, got {s!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} is not a valid strategy ({exc}): {s!r}") from exc
        if strategy.rule == "pass":
            raise ValueError(f"{where} is not a usable strategy: {s!r}")
        if strategy.keeps_probes and not probe_m:
            raise ValueError(f"{where} keeps probes, but the plan draws none")
        if strategy.keeps_probes and raw["format"] in FORMATS[:3]:  # /4 brought kept probes
            raise ValueError(f"{where} keeps probes, which format {raw['format']!r} does not have")
        if strategy.method == "sequential" and compares_samples(strategy.rule.split(":", 1)[1]):
            raise ValueError(f"{where}: a stop rule needs a verifier that scores each sample on its own, not "
                             f"{strategy.rule.split(':', 1)[1]!r} (its scores change as samples arrive)")
        strategies.append(strategy)
    if len(strategies) != len(edges) + 1:
        raise ValueError(f"{path}: {len(strategies)} strategies for {len(edges) + 1} bins")
    components = raw.get("components") or {}
    for needs, key in (("beam", "prm"), ("lookahead", "prm"), ("revise", "revision_model")):
        if any(s.method == needs for s in strategies) and not components.get(key):
            raise ValueError(f"{path}: a {needs} strategy needs field 'components'.'{key}'")
    accuracy = raw.get("cross_validated_accuracy")
    return TestTimePlan(verifier=field("verifier", str) if kind == "predicted" else raw.get("verifier"),
                        probe_temperature=probe_t, probe_samples=probe_m, bin_edges=edges, strategies=strategies,
                        budget=float(field("budget", (int, float))), task=raw.get("task"),
                        cross_validated_accuracy=None if accuracy is None else float(accuracy),
                        components=components, unit=raw.get("unit", "samples"),
                        unit_size=float(raw.get("unit_size", 1.0)))


def apply_plan(config: Any, plan: TestTimePlan, *, sample: Callable, score: Callable,
               open_policy: Callable | None = None, verifiers: list | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Probe, bin, run and select for every prompt of ``config`` (an EvalRunConfig); writes
    RUN/applied-plan/results.jsonl and summary.json and returns the summary.

    ``sample(config, only=ids, first_index=i)`` (returning the task) and ``score()`` are the sampling run and the
    scoring step, passed in by the workflow that owns the executor; ``open_policy(spec)`` loads a model for search
    and revisions, and ``verifiers`` score revision attempts."""
    from infertune.store import SampleStore

    store = SampleStore(config.run_dir())
    m = plan.probe_samples
    if m:
        log(f"probing: {m} samples per prompt at T={plan.probe_temperature:g}")
        task = sample(replace(config, n=m, temperatures=[plan.probe_temperature]), only=None, first_index=0)
        score()
        # The probes are sample indices 0 .. m − 1 at the probe temperature (a resumed run may hold more there).
        probes = {pid: [row for row in rows if row["sample_index"] < m]
                  for pid, rows in _rows(store, task.name, plan.probe_temperature).items()}
        ids = sorted(probes)
        hardness = np.array([_probe_hardness(plan, probes[pid][:m]) for pid in ids])
        probe_tokens = {pid: sum(r["num_tokens"] or 0 for r in probes[pid][:m]) for pid in ids}
    else:
        task = config.load_task()
        problems = task.problems()[: config.limit] if config.limit else task.problems()
        ids = sorted(p.id for p in problems)
        hardness, probe_tokens, probes = np.zeros(len(ids)), {pid: 0 for pid in ids}, {}
    chosen = dict(zip(ids, plan.strategy_for(hardness)))
    outcome = {}
    parallel = {pid: s for pid, s in chosen.items() if s.method == "parallel"}
    if parallel:
        outcome.update(_apply_parallel(config, plan, parallel, store, task, sample, score, log, probes))
    stopping = {pid: s for pid, s in chosen.items() if s.method == "sequential"}
    if stopping:
        outcome.update(_apply_sequential(config, plan, stopping, store, task, sample, score, log, probes))
    others = {pid: s for pid, s in chosen.items() if s.method not in ("parallel", "sequential")}
    if others:
        if open_policy is None:
            raise ValueError("this plan has search or revision strategies; applying it needs a local model")
        outcome.update(_apply_runs(config, plan, others, task, open_policy, verifiers or [], log))
    results = []
    for pid, h in zip(ids, hardness):
        s = chosen[pid]
        accuracy, row, generated, *drawn = outcome[pid]
        tokens = generated + probe_tokens[pid]
        samples = (drawn[0] if drawn else s.n) + m
        # A probe's −inf score makes its difficulty +inf, written "inf" as plan.json writes it (JSON has no infinity).
        results.append({"prompt_id": pid, "difficulty": float(h) if np.isfinite(h) else str(float(h)),
                        "strategy": s.label(), "method": s.method,
                        "samples": samples, "tokens": int(tokens), "cost": tokens / plan.unit_size
                        if plan.unit == "tokens" else samples, "accuracy": accuracy, "answer": row.get("answer"),
                        "completion": row.get("completion")})
    out = store.path / "applied-plan"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "w") as fh:
        for row in results:
            fh.write(json.dumps(row) + "\n")
    acc = np.array([r["accuracy"] for r in results])
    summary = {"prompts": len(results), "accuracy": float(acc.mean()),
               "mean_samples": float(np.mean([r["samples"] for r in results])),
               "mean_tokens": float(np.mean([r["tokens"] for r in results])),
               "mean_cost": float(np.mean([r["cost"] for r in results])), "unit": plan.unit,
               "plan_budget": plan.budget, "planned_accuracy": plan.cross_validated_accuracy,
               "per_strategy": {label: {"prompts": int(count),
                                        "accuracy": float(np.mean([r["accuracy"] for r in results
                                                                   if r["strategy"] == label]))}
                                for label, count in Counter(r["strategy"] for r in results).items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _apply_parallel(config, plan: TestTimePlan, chosen: dict, store, task, sample, score, log,
                    probes: dict[str, list[dict]]) -> dict:
    groups: dict[tuple[float, int], list[str]] = defaultdict(list)
    for pid, s in chosen.items():
        if s.n:
            groups[(s.temperature, s.n)].append(pid)
    m = plan.probe_samples
    for (temperature, n), members in sorted(groups.items()):
        log(f"sampling N={n} at T={temperature:g} for {len(members)} prompts (sample indices {m}..{m + n - 1})")
        sample(replace(config, n=m + n, temperatures=[temperature]), only=set(members), first_index=m)
    if groups:
        score()
    by_temperature = {t: _rows(store, task.name, t) for t in {s.temperature for s in chosen.values() if s.n}}
    out = {}
    for pid, s in chosen.items():
        rows = [row for row in by_temperature[s.temperature][pid] if m <= row["sample_index"] < m + s.n] if s.n else []
        if len(rows) < s.n:
            raise ValueError(f"{store.path}: prompt {pid} has {len(rows)} samples with indices {m}..{m + s.n - 1} "
                             f"at T={s.temperature}, not {s.n}")
        candidates = probes[pid][:m] + rows if s.keeps_probes else rows
        accuracy, pick = _select(s.rule, candidates, _ties(config.seed, pid))
        out[pid] = (accuracy, candidates[pick], sum(r["num_tokens"] or 0 for r in rows))
    return out


def _apply_sequential(config, plan: TestTimePlan, chosen: dict, store, task, sample, score, log,
                      probes: dict[str, list[dict]]) -> dict:
    """Best-of-N with a stop rule, drawn as it would be served: in round i every prompt still open draws its sample
    at index m + i; a prompt closes when that sample's verifier score reaches its strategy's threshold, or after N
    samples, and answers with the best-scored sample it drew. A strategy that keeps its probes closes before the
    first round if a probe reaches the threshold, and counts the probes among the samples it drew. Each prompt is
    charged for the fresh samples it drew."""
    m = plan.probe_samples
    open_ = dict(chosen)
    out = {}
    for pid, s in chosen.items():
        if s.keeps_probes:
            kept = probes[pid][:m]
            verifier = s.rule.split(":", 1)[1]
            if max(_score(row, verifier) for row in kept) >= s.threshold:
                accuracy, pick = _select(s.rule, kept, _ties(config.seed, pid))
                out[pid] = (accuracy, kept[pick], 0, 0)
                del open_[pid]
    for i in range(max((s.n for s in open_.values()), default=0)):
        by_temperature: dict[float, set[str]] = defaultdict(set)
        for pid, s in open_.items():
            by_temperature[s.temperature].add(pid)
        log(f"stop rule, round {i + 1}: {len(open_)} prompts draw sample index {m + i}")
        for temperature, members in sorted(by_temperature.items()):
            sample(replace(config, n=m + i + 1, temperatures=[temperature]), only=members, first_index=m + i)
        score()
        rows = {t: _rows(store, task.name, t, only=members) for t, members in by_temperature.items()}
        for pid, s in list(open_.items()):
            drawn = [row for row in rows[s.temperature][pid] if m <= row["sample_index"] <= m + i]
            if len(drawn) != i + 1:
                raise ValueError(f"{store.path}: prompt {pid} has {len(drawn)} samples with indices {m}..{m + i} "
                                 f"at T={s.temperature}, not {i + 1}")
            verifier = s.rule.split(":", 1)[1]
            if _score(drawn[-1], verifier) >= s.threshold or i + 1 == s.n:
                candidates = probes[pid][:m] + drawn if s.keeps_probes else drawn
                accuracy, pick = _select(s.rule, candidates, _ties(config.seed, pid))
                out[pid] = (accuracy, candidates[pick], sum(r["num_tokens"] or 0 for r in drawn), i + 1)
                del open_[pid]
        if not open_:
            break
    return out


def _apply_runs(config, plan: TestTimePlan, chosen: dict, task, open_policy, verifiers, log) -> dict:
    """Search and revision strategies, each run into a store of its own under RUN/strategies/."""
    from infertune.planning.runs import PRM_AGGREGATES, run_revisions, run_search, store_name, strategy_dir
    from infertune.scoring import score_store
    from infertune.store import SampleStore
    from infertune.verify.prm import ProcessRewardModel

    comp = plan.components
    policy = open_policy(config.model)
    problems = {p.id: p for p in task.problems()}
    groups: dict[Strategy, list[str]] = defaultdict(list)
    for pid, s in chosen.items():
        groups[s].append(pid)
    folder = strategy_dir(config.run_dir())
    out = {}
    prm = reviser = None
    for s, members in groups.items():
        todo = [problems[pid] for pid in members]
        if s.method in ("beam", "lookahead"):
            prm = prm or ProcessRewardModel.load(Path(comp["prm"]))
            log(f"{s.label()} for {len(todo)} prompts")
            target = SampleStore(folder / store_name(s))
            chooser = s.rule.split(":", 1)[1]
            final = next((v for v in verifiers if v.name == chooser), None)
            run_search(target, task, todo, policy, prm, s, runs=1, seed=config.seed,
                       max_steps=int(comp.get("max_steps", 16)), max_step_tokens=int(comp.get("max_step_tokens", 32)),
                       final=final if chooser not in PRM_AGGREGATES else None, log=log)
            score_store(target, task, [])
            rows = _rows(target, task.name, s.temperature)
            for pid in members:
                row = rows[pid][0]
                out[pid] = (float(row["reward"]), row, int(row["num_tokens"] or 0))
        else:
            reviser = reviser or open_policy(comp["revision_model"])
            layout = ChainLayout(s.chains, s.attempts, s.temperature, int(comp.get("window", 2)))
            log(f"{s.label()} for {len(todo)} prompts")
            target = SampleStore(folder / f"applied-revise-{s.chains}x{s.attempts}-T{s.temperature:g}-w{layout.window}")
            run_revisions(target, task, todo, policy, reviser, layout, seed=config.seed,
                          max_new_tokens=config.max_new_tokens, log=log)
            score_store(target, task, verifiers)
            rows = _rows(target, task.name, s.temperature)
            for pid in members:
                attempts = rows[pid][: s.n]
                accuracy, row = chain_pick(s.rule, [attempts[c * s.attempts : (c + 1) * s.attempts]
                                                    for c in range(s.chains)], _ties(config.seed, pid))
                out[pid] = (accuracy, row, sum(int(r["num_tokens"] or 0) for r in attempts))
    return out


def chain_pick(rule: str, chains: list[list[dict]],
               rng: np.random.Generator | None = None) -> tuple[float, dict]:
    """The answer a revision strategy gives from its chains, as ``strategies.revision_table`` values it: by a
    verifier, each chain offers its best-scored attempt and the best chain wins (expected reward over ties, within
    and among chains, each broken uniformly with ``rng``, else the first); by (weighted) majority, the chains' last
    attempts vote."""
    if not rule.startswith("bon:"):
        last = [chain[-1] for chain in chains]
        accuracy, pick = _select(rule, last, rng)
        return accuracy, last[pick]
    verifier = rule.split(":", 1)[1]
    offers = []
    for chain in chains:
        scores = [_score(row, verifier) for row in chain]
        top = max(scores)
        tied = [row for row, v in zip(chain, scores) if v == top]
        offers.append((top, float(np.mean([row["reward"] for row in tied])), tied))
    best = max(top for top, _, _ in offers)
    winners = [(reward, tied) for top, reward, tied in offers if top == best]
    chain = winners[one_of_tied(range(len(winners)), rng)][1]
    return float(np.mean([reward for reward, _ in winners])), chain[one_of_tied(range(len(chain)), rng)]


def _select(rule: str, rows: list[dict], rng: np.random.Generator | None = None) -> tuple[float, int]:
    verifier = rule.split(":", 1)[1] if ":" in rule else None
    scores = None if verifier is None else [_score(row, verifier) for row in rows]
    return selected_accuracy(rule, [row["reward"] for row in rows], [row["answer"] for row in rows], scores, rng)


def _ties(seed: int, prompt_id: str) -> np.random.Generator:
    """The generator that breaks a prompt's ties among equally good candidates: uniformly, as the plan's values
    assume (the first of them would favour probes, which come first), and the same on every run of the seed."""
    return np.random.default_rng([seed % 2**64, zlib.crc32(prompt_id.encode())])  # any int seed, negative too


def _score(row: dict, verifier: str) -> float:
    """A sample's score by a verifier, as the plan's estimators accept it: a number, or −inf (never picked)."""
    value = row["scores"].get(verifier)
    if value is None or np.isnan(value) or np.isposinf(value):
        raise ValueError(f"prompt {row['prompt_id']!r}, sample {row['sample_index']}: verifier {verifier!r} scored "
                         f"{value}; a plan ranks numbers or -inf only")
    return float(value)


def _probe_hardness(plan: TestTimePlan, rows: list[dict]) -> float:
    if len(rows) < plan.probe_samples:
        raise ValueError(f"a prompt has {len(rows)} probe samples, the plan needs {plan.probe_samples}")
    scores = np.array([[_score(row, plan.verifier) for row in rows]])
    codes: dict[str, int] = {}
    ids = np.array([[-1 if row["answer"] is None else codes.setdefault(row["answer"], len(codes)) for row in rows]])
    return float(1.0 - probe_scores(plan.verifier, scores, ids).mean())


def _rows(store, task: str, temperature: float, only: set[str] | None = None) -> dict[str, list[dict]]:
    """Scored rows of one task and temperature (of the prompts in ``only``, if given), per prompt, in sample-index
    order. Rows are filtered in Arrow before they become Python objects: the stop rule reads once per round."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = store.read()
    names = [c for c in table.column_names if c.startswith("score_")]
    keep = pc.and_(pc.equal(table.column("task"), task), pc.equal(table.column("temperature"), temperature))
    if only is not None:
        keep = pc.and_(keep, pc.is_in(table.column("prompt_id"), value_set=pa.array(sorted(only), pa.string())))
    data = table.filter(keep).select(["task", "prompt_id", "temperature", "sample_index", "answer", "reward",
                                      "completion", "num_tokens", *names]).to_pylist()
    rows: dict[str, list[dict]] = defaultdict(list)
    for row in data:
        if row["reward"] is None:
            raise ValueError(f"{store.path}: prompt {row['prompt_id']} sample {row['sample_index']} is unscored")
        row["scores"] = {c[len("score_"):]: row[c] for c in names}
        rows[row["prompt_id"]].append(row)
    for values in rows.values():
        values.sort(key=lambda row: row["sample_index"])
    return dict(rows)
