"""Applying a saved test-time plan (``infertune plan``'s plan.json) to new prompts: ``infertune eval --plan``.

Per prompt: draw the plan's m probe samples, score them with its verifier, compute the predicted difficulty exactly
as ``plan`` did (1 − mean probe score, agreement recomputed among the probes), look up the prompt's bin, draw the
bin's N samples at its temperature and select one by its rule (``infertune.selection``). Because sample i of a
prompt depends only on (seed, prompt, i), the probes are the first m of the N samples whenever the bin's
temperature is the probe temperature, so they cost nothing extra there. ``apply_plan`` is the edge that samples,
scores (through the callables it is given) and writes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from infertune.planning.difficulty import assign_bins, probe_scores
from infertune.planning.planner import PLAN_FORMAT
from infertune.planning.strategies import Strategy
from infertune.evaluation import selected_accuracy


@dataclass(frozen=True)
class TestTimePlan:
    """A validated plan.json: probe settings, difficulty bins and the strategy of each bin."""

    verifier: str
    probe_temperature: float
    probe_samples: int
    bin_edges: np.ndarray
    strategies: list[Strategy]
    budget: float
    task: str | None
    cross_validated_accuracy: float | None

    def strategy_for(self, hardness: np.ndarray) -> list[Strategy]:
        return [self.strategies[b] for b in assign_bins(np.asarray(hardness, dtype=np.float64), self.bin_edges)]


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

    if raw.get("format") != PLAN_FORMAT:
        raise ValueError(f"{path}: field 'format' is {raw.get('format')!r}, expected {PLAN_FORMAT!r} (a plan "
                         "from this version of infertune plan)")
    if field("difficulty", str) != "predicted":
        raise ValueError(f"{path}: field 'difficulty' is {raw['difficulty']!r}; only a plan made with predicted "
                         "difficulty can be applied to unlabelled prompts (plan --difficulty predicted)")
    probe = field("probe", dict)
    try:
        probe_t, probe_m = float(probe["temperature"]), int(probe["samples"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: field 'probe' needs 'temperature' and 'samples', got {probe!r}") from exc
    edges = np.asarray(field("bin_edges", list), dtype=np.float64)
    strategies = []
    for i, s in enumerate(field("strategies", list)):
        try:
            strategy = Strategy(float(s["temperature"]), str(s["rule"]), int(s["n"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: field 'strategies'[{i}] needs temperature, rule and n, got {s!r}") from exc
        if strategy.rule == "pass" or strategy.n < 1:
            raise ValueError(f"{path}: field 'strategies'[{i}] is not a usable strategy: {s!r}")
        strategies.append(strategy)
    if len(strategies) != len(edges) + 1:
        raise ValueError(f"{path}: {len(strategies)} strategies for {len(edges) + 1} bins")
    accuracy = raw.get("cross_validated_accuracy")
    return TestTimePlan(verifier=field("verifier", str), probe_temperature=probe_t, probe_samples=probe_m,
                  bin_edges=edges, strategies=strategies, budget=float(field("budget", (int, float))),
                  task=raw.get("task"), cross_validated_accuracy=None if accuracy is None else float(accuracy))


def apply_plan(config: Any, plan: TestTimePlan, *, sample: Callable, score: Callable,
               log: Callable[[str], None] = print) -> dict:
    """Probe, bin, sample and select for every prompt of ``config`` (an EvalRunConfig); writes
    RUN/applied-plan/results.jsonl and summary.json and returns the summary.

    ``sample(config, only=ids, first_index=i)`` (returning the task) and ``score()`` are the sampling run and the
    scoring step, passed in by the workflow that owns the executor."""
    from infertune.store import SampleStore

    probe_config = replace(config, n=plan.probe_samples, temperatures=[plan.probe_temperature])
    log(f"probing: {plan.probe_samples} samples per prompt at T={plan.probe_temperature:g}")
    task = sample(probe_config, only=None, first_index=0)
    score()
    store = SampleStore(config.run_dir())
    probes = _rows(store, task.name, plan.probe_temperature)
    ids = sorted(probes)
    hardness = np.array([_probe_hardness(plan, probes[pid][: plan.probe_samples]) for pid in ids])
    chosen = dict(zip(ids, plan.strategy_for(hardness)))
    groups: dict[tuple[float, int], list[str]] = defaultdict(list)
    for pid, s in chosen.items():
        groups[(s.temperature, s.n)].append(pid)
    m = plan.probe_samples
    for (temperature, n), members in sorted(groups.items()):
        log(f"sampling N={n} at T={temperature:g} for {len(members)} prompts (sample indices {m}..{m + n - 1})")
        sample(replace(config, n=m + n, temperatures=[temperature]), only=set(members), first_index=m)
    score()
    results = []
    by_temperature = {t: _rows(store, task.name, t) for t in {s.temperature for s in chosen.values()}}
    for pid, h in zip(ids, hardness):
        s = chosen[pid]
        rows = [row for row in by_temperature[s.temperature][pid] if m <= row["sample_index"] < m + s.n]
        if len(rows) < s.n:
            raise ValueError(f"{store.path}: prompt {pid} has {len(rows)} samples with indices {m}..{m + s.n - 1} "
                             f"at T={s.temperature}, not {s.n}")
        verifier = s.rule.split(":", 1)[1] if ":" in s.rule else None
        scores = None if verifier is None else [row["scores"][verifier] for row in rows]
        accuracy, pick = selected_accuracy(s.rule, [row["reward"] for row in rows], [row["answer"] for row in rows],
                                           scores)
        spent = s.n + m
        results.append({"prompt_id": pid, "difficulty": float(h), "strategy": s.label(), "samples": spent,
                        "accuracy": accuracy, "answer": rows[pick]["answer"], "completion": rows[pick]["completion"]})
    out = store.path / "applied-plan"
    out.mkdir(exist_ok=True)
    with open(out / "results.jsonl", "w") as fh:
        for row in results:
            fh.write(json.dumps(row) + "\n")
    acc = np.array([r["accuracy"] for r in results])
    spent = np.array([r["samples"] for r in results])
    summary = {"prompts": len(results), "accuracy": float(acc.mean()), "mean_samples": float(spent.mean()),
               "plan_budget": plan.budget, "planned_accuracy": plan.cross_validated_accuracy,
               "per_strategy": {label: {"prompts": int(count),
                                        "accuracy": float(np.mean([r["accuracy"] for r in results
                                                                   if r["strategy"] == label]))}
                                for label, count in Counter(r["strategy"] for r in results).items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _probe_hardness(plan: TestTimePlan, rows: list[dict]) -> float:
    if len(rows) < plan.probe_samples:
        raise ValueError(f"a prompt has {len(rows)} probe samples, the plan needs {plan.probe_samples}")
    scores = np.array([[row["scores"][plan.verifier] for row in rows]])
    codes: dict[str, int] = {}
    ids = np.array([[-1 if row["answer"] is None else codes.setdefault(row["answer"], len(codes)) for row in rows]])
    return float(1.0 - probe_scores(plan.verifier, scores, ids).mean())


def _rows(store, task: str, temperature: float) -> dict[str, list[dict]]:
    """Scored rows of one task and temperature, per prompt, in sample-index order."""
    table = store.read()
    names = [c for c in table.column_names if c.startswith("score_")]
    data = table.select(["task", "prompt_id", "temperature", "sample_index", "answer", "reward", "completion",
                         *names]).to_pylist()
    rows: dict[str, list[dict]] = defaultdict(list)
    for row in data:
        if row["task"] == task and row["temperature"] == temperature:
            if row["reward"] is None:
                raise ValueError(f"{store.path}: prompt {row['prompt_id']} sample {row['sample_index']} is unscored")
            row["scores"] = {c[len("score_"):]: row[c] for c in names}
            rows[row["prompt_id"]].append(row)
    for values in rows.values():
        values.sort(key=lambda row: row["sample_index"])
    return dict(rows)
