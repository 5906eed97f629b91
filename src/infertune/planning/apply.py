"""Applying a saved test-time policy (``infertune plan``'s policy.json) to new prompts: ``infertune eval --policy``.

Per prompt: draw the policy's m probe samples, score them with its verifier, compute the predicted difficulty exactly
as ``plan`` did (1 − mean probe score, agreement recomputed among the probes), look up the prompt's bin, draw the
bin's N samples at its temperature and select one by its rule. Because sample i of a prompt depends only on
(seed, prompt, i), the probes are the first m of the N samples whenever the bin's temperature is the probe
temperature, so they cost nothing extra there. The selection functions below are pure; ``run_policy`` is the edge
that samples, scores and writes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from infertune.planner import POLICY_FORMAT, Strategy, assign_bins, probe_scores


@dataclass(frozen=True)
class Policy:
    """A validated policy.json."""

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


def load_policy(path: str | Path) -> Policy:
    """Read and check a policy file; errors name the file and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such policy file (infertune plan RUN writes RUN/plan/policy.json)")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc

    def field(name: str, kind: type | tuple):
        if name not in raw:
            raise ValueError(f"{path}: missing field '{name}'")
        if not isinstance(raw[name], kind):
            raise ValueError(f"{path}: field '{name}' should be {getattr(kind, '__name__', kind)}, got {raw[name]!r}")
        return raw[name]

    if raw.get("format") != POLICY_FORMAT:
        raise ValueError(f"{path}: field 'format' is {raw.get('format')!r}, expected {POLICY_FORMAT!r} (a policy "
                         "from this version of infertune plan)")
    if field("difficulty", str) != "predicted":
        raise ValueError(f"{path}: field 'difficulty' is {raw['difficulty']!r}; only a policy planned with predicted "
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
    return Policy(verifier=field("verifier", str), probe_temperature=probe_t, probe_samples=probe_m,
                  bin_edges=edges, strategies=strategies, budget=float(field("budget", (int, float))),
                  task=raw.get("task"), cross_validated_accuracy=None if accuracy is None else float(accuracy))


def selected_accuracy(rule: str, rewards: Sequence[float], answers: Sequence[str | None],
                      scores: Sequence[float] | None = None) -> tuple[float, int]:
    """(expected reward of the rule's pick over random tie-breaking, index of one pick) for one prompt's N samples.

    ``bon:<v>`` picks the highest score; ``maj`` the most frequent parsed answer; ``wmaj:<v>`` the answer with the
    largest summed score. An answer's reward is the mean reward of the samples giving it; no parsed answer scores 0.
    """
    r = np.asarray(rewards, dtype=np.float64)
    kind = rule.split(":", 1)[0]
    if kind == "bon":
        s = np.asarray(scores, dtype=np.float64)
        best = np.flatnonzero(s == s.max())
        return float(r[best].mean()), int(best[0])
    if kind not in ("maj", "wmaj"):
        raise ValueError(f"unknown selection rule {rule!r}; expected bon:<verifier>, maj or wmaj:<verifier>")
    weight: dict[str, float] = defaultdict(float)
    members: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(answers):
        if a is not None:
            weight[a] += 1.0 if kind == "maj" else float(scores[i])
            members[a].append(i)
    if not weight:
        return 0.0, 0
    top = max(weight.values())
    tied = [a for a, w in weight.items() if w == top]
    return float(np.mean([r[members[a]].mean() for a in tied])), members[tied[0]][0]


def run_policy(config: Any, policy: Policy, *, sample: Callable, score: Callable,
               log: Callable[[str], None] = print) -> dict:
    """Probe, bin, sample and select for every prompt of ``config`` (an EvalRunConfig); writes
    RUN/policy/results.jsonl and summary.json and returns the summary.

    ``sample(config, only=ids)`` and ``score()`` are the pipeline's sampling and scoring steps (injected so the
    CLI keeps its progress display and executor)."""
    from infertune.store import SampleStore

    probe_config = replace(config, n=policy.probe_samples, temperatures=[policy.probe_temperature])
    log(f"probing: {policy.probe_samples} samples per prompt at T={policy.probe_temperature:g}")
    task = sample(probe_config, only=None)
    score()
    store = SampleStore(config.run_dir())
    probes = _rows(store, task.name, policy.probe_temperature)
    ids = sorted(probes)
    hardness = np.array([_probe_hardness(policy, probes[pid][: policy.probe_samples]) for pid in ids])
    chosen = dict(zip(ids, policy.strategy_for(hardness)))
    groups: dict[tuple[float, int], list[str]] = defaultdict(list)
    for pid, s in chosen.items():
        groups[(s.temperature, s.n)].append(pid)
    for (temperature, n), members in sorted(groups.items()):
        log(f"sampling N={n} at T={temperature:g} for {len(members)} prompts")
        sample(replace(config, n=n, temperatures=[temperature]), only=set(members))
    score()
    results = []
    by_temperature = {t: _rows(store, task.name, t) for t in {s.temperature for s in chosen.values()}}
    for pid, h in zip(ids, hardness):
        s = chosen[pid]
        rows = by_temperature[s.temperature][pid][: s.n]
        if len(rows) < s.n:
            raise ValueError(f"{store.path}: prompt {pid} has {len(rows)} samples at T={s.temperature}, not {s.n}")
        verifier = s.rule.split(":", 1)[1] if ":" in s.rule else None
        scores = None if verifier is None else [row["scores"][verifier] for row in rows]
        accuracy, pick = selected_accuracy(s.rule, [row["reward"] for row in rows], [row["answer"] for row in rows],
                                           scores)
        spent = s.n + (0 if s.temperature == policy.probe_temperature else policy.probe_samples)
        spent = max(spent, policy.probe_samples)
        results.append({"prompt_id": pid, "difficulty": float(h), "strategy": s.label(), "samples": spent,
                        "accuracy": accuracy, "answer": rows[pick]["answer"], "completion": rows[pick]["completion"]})
    out = store.path / "policy"
    out.mkdir(exist_ok=True)
    with open(out / "results.jsonl", "w") as fh:
        for row in results:
            fh.write(json.dumps(row) + "\n")
    acc = np.array([r["accuracy"] for r in results])
    spent = np.array([r["samples"] for r in results])
    summary = {"prompts": len(results), "accuracy": float(acc.mean()), "mean_samples": float(spent.mean()),
               "policy_budget": policy.budget, "planned_accuracy": policy.cross_validated_accuracy,
               "per_strategy": {label: {"prompts": int(count),
                                        "accuracy": float(np.mean([r["accuracy"] for r in results
                                                                   if r["strategy"] == label]))}
                                for label, count in Counter(r["strategy"] for r in results).items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _probe_hardness(policy: Policy, rows: list[dict]) -> float:
    if len(rows) < policy.probe_samples:
        raise ValueError(f"a prompt has {len(rows)} probe samples, the policy needs {policy.probe_samples}")
    scores = np.array([[row["scores"][policy.verifier] for row in rows]])
    codes: dict[str, int] = {}
    ids = np.array([[-1 if row["answer"] is None else codes.setdefault(row["answer"], len(codes)) for row in rows]])
    return float(1.0 - probe_scores(policy.verifier, scores, ids).mean())


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
