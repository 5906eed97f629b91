"""Plans that keep their probes as candidates: the table's values against the forced-candidate estimators, the
uniform baseline without them, plan files, and applying them to new prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infertune import planning as planner
from infertune.estimators import bon_curve_forced, stop_curves_forced
from infertune.planning import PLAN_FORMAT, Strategy, load_plan
from infertune.store import SampleStore
from infertune.synthetic import SyntheticConfig, write_run

from plan_cli import eval_plan


def test_kept_probe_table_values_the_probes_with_fresh_samples_after_them(tmp_path):
    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=40, n=10, temperatures=[0.5, 1.0], seed=3))
    store = SampleStore(tmp_path)
    samples = {t: store.scored(temperature=t) for t in (0.5, 1.0)}
    table = planner.kept_probe_table(samples, (0.5, 2), quantiles=[0.5, 0.9], caps=[2, 4, 50], unit="tokens")
    assert all(s.keeps_probes for s in table.strategies)
    parallel = [s for s in table.strategies if s.method == "parallel"]
    assert {s.n for s in parallel} == set(range(9)) and len(parallel) == 2 * 2 * 8 + 2  # temperatures x verifiers
    probes, pool = samples[0.5], samples[1.0]
    j = table.strategies.index(Strategy(1.0, "bon:orm", 3, keeps_probes=True))
    assert {s.n for s in parallel if s.temperature == 1.0} == set(range(1, 9))
    expected = bon_curve_forced(pool.scores["orm"][:, 2:], pool.rewards[:, 2:], probes.scores["orm"][:, :2],
                                probes.rewards[:, :2])
    np.testing.assert_allclose(table.values[:, j], expected[:, 3])
    np.testing.assert_allclose(table.costs[:, j], 3 * pool.tokens[:, 2:].mean(axis=1))
    assert np.all(table.costs[:, table.strategies.index(Strategy(0.5, "bon:orm", 0, keeps_probes=True))] == 0)
    k = next(i for i, s in enumerate(table.strategies) if s.method == "sequential" and s.temperature == 1.0
             and s.rule == "bon:orm" and s.n == 4)
    values, _, spent = stop_curves_forced(pool.scores["orm"][:, 2:], pool.rewards[:, 2:], pool.tokens[:, 2:],
                                          probes.scores["orm"][:, :2], probes.rewards[:, :2],
                                          table.strategies[k].threshold)
    np.testing.assert_allclose(table.values[:, k], values[:, 4])
    np.testing.assert_allclose(table.costs[:, k], spent[:, 4])
    assert {s.n for s in table.strategies if s.method == "sequential"} == {2, 4}
    # The best probe alone (N = 0) once per verifier, at the probe temperature.
    assert sorted((s.temperature, s.rule) for s in parallel if s.n == 0) == [(0.5, "bon:confidence"), (0.5, "bon:orm")]
    # The stop rules' thresholds are the plain stop rules' (quantiles of the scores after the probes).
    plain = planner.stop_table(samples, quantiles=[0.5, 0.9], caps=[2, 4], skip=2, unit="tokens")
    assert ({(s.rule, s.threshold) for s in table.strategies if s.method == "sequential"}
            == {(s.rule, s.threshold) for s in plain.strategies})
    with pytest.raises(ValueError, match=r"no samples at probe temperature 0.7; have \[0.5, 1.0\]"):
        planner.kept_probe_table(samples, (0.7, 2), quantiles=[], caps=[2])
    assert not any(s.method == "sequential" for s in
                   planner.kept_probe_table(samples, (0.5, 2), quantiles=[], caps=[2]).strategies)


def test_the_uniform_baseline_never_keeps_probes_and_plans_may(tmp_path):
    from infertune.planning import PlanConfig, plan_run, write_plan
    from infertune.planning.planner import _uniform_candidates

    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=100, n=16, temperatures=[0.5, 1.0], seed=4))
    config = PlanConfig(budget=4, curve=[], probe_samples=1, verifier="orm", bootstrap=0, guard=False, folds=4,
                        bins=2)
    samples = {t: SampleStore(tmp_path).scored(temperature=t) for t in (0.5, 1.0)}
    table = planner.combine([planner.strategy_table(samples, skip=1),
                             planner.kept_probe_table(samples, (0.5, 1), quantiles=[0.5], caps=[4], unit="tokens")])
    assert not any(table.strategies[i].keeps_probes for i in _uniform_candidates(table))
    run = plan_run(SampleStore(tmp_path), config)
    assert any(s["keeps_probes"] for s in run.result.spec["strategies"]), "no bin kept its probe: the test is weak"
    paths = write_plan(run, tmp_path / "plan")
    loaded = load_plan(paths["plan"])
    assert [s.keeps_probes for s in loaded.strategies] == [s["keeps_probes"] for s in run.result.spec["strategies"]]
    off = plan_run(SampleStore(tmp_path), PlanConfig(**{**config.__dict__, "keep_probes": False}))
    assert not any("probes+" in b["label"] for b in off.result.per_bin)
    # Best-of-N keeping the probe at N = 1 .. 15 fresh samples per temperature and verifier, N = 0 per verifier.
    assert run.strategies["parallel"]["strategies"] == off.strategies["parallel"]["strategies"] + 2 * 2 * 15 + 2


def test_plan_files_with_kept_probes_are_checked(tmp_path):
    def written(probe_samples, plan_format=PLAN_FORMAT, **strategy):
        raw = {"format": plan_format, "difficulty": "predicted" if probe_samples else "none", "verifier": "orm",
               "budget": 4, "bin_edges": [], "task": "arith",
               "strategies": [{"temperature": 1.0, "rule": "bon:orm", "n": 0, **strategy}]}
        if probe_samples:
            raw["probe"] = {"temperature": 1.0, "samples": probe_samples}
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(raw))
        return path

    assert load_plan(written(1, keeps_probes=True)).strategies[0] == Strategy(1.0, "bon:orm", 0, keeps_probes=True)
    with pytest.raises(ValueError, match=r"'strategies'\[0\] keeps probes, but the plan draws none"):
        load_plan(written(0, keeps_probes=True))
    with pytest.raises(ValueError, match=r"'keeps_probes' should be true or false, got 'yes'"):
        load_plan(written(1, keeps_probes="yes"))
    with pytest.raises(ValueError, match="at least one sample"):
        load_plan(written(1))  # n = 0 without the probes draws nothing
    with pytest.raises(ValueError, match="only Best-of-N and its stop rule keep probes"):
        Strategy(1.0, "maj", 4, keeps_probes=True)
    with pytest.raises(ValueError, match="at least one sample"):  # a stop rule draws at least one
        load_plan(written(1, keeps_probes=True, method="sequential", threshold=0.5))
    # Plans of earlier formats load (no strategy of theirs keeps probes) and cannot claim to.
    assert load_plan(written(1, "infertune-plan/3", n=2)).strategies[0] == Strategy(1.0, "bon:orm", 2)
    with pytest.raises(ValueError, match="keeps probes, which format 'infertune-plan/3' does not have"):
        load_plan(written(1, "infertune-plan/3", keeps_probes=True))


def _apply(tmp_path, strategy: dict, probe: tuple[float, int] = (0.5, 1)):
    raw = {"format": PLAN_FORMAT, "difficulty": "predicted", "verifier": "confidence", "budget": 4,
           "probe": {"temperature": probe[0], "samples": probe[1]}, "bin_edges": [], "strategies": [strategy],
           "task": "arith",
           "components": {"verifier_specs": {"confidence": "confidence=tiny"}}}
    results, out = eval_plan(tmp_path, raw)
    rows: dict = {}
    for row in sorted(SampleStore(out).read().to_pylist(), key=lambda row: (row["temperature"] != probe[0],
                                                                            row["sample_index"])):
        rows.setdefault(row["prompt_id"], []).append(row)  # the probes first, then the strategy's samples
    return results, rows


def _best(rows):
    best = max(row["score_confidence"] for row in rows)
    return np.mean([row["reward"] for row in rows if row["score_confidence"] == best])


def _picked(result, rows) -> bool:
    """The result answers with the best-scored candidate (rewards of the untrained tiny model are nearly all 0, so
    accuracy alone would rarely tell candidates apart)."""
    return result["completion"] == max(rows, key=lambda row: row["score_confidence"])["completion"]


def test_eval_plan_answers_from_the_probe_alone_or_with_fresh_samples(tmp_path):
    """N = 0 draws nothing after the probe and answers with it; N = 2 selects among the probe and two fresh
    samples, and is charged for all three."""
    results, rows = _apply(tmp_path / "zero", {"temperature": 0.5, "rule": "bon:confidence", "n": 0,
                                               "keeps_probes": True})
    for pid, r in results.items():
        assert [row["sample_index"] for row in rows[pid]] == [0]
        assert r["samples"] == 1 and r["tokens"] == rows[pid][0]["num_tokens"]
        assert r["accuracy"] == rows[pid][0]["reward"] and r["completion"] == rows[pid][0]["completion"]
    results, rows = _apply(tmp_path / "two", {"temperature": 0.5, "rule": "bon:confidence", "n": 2,
                                              "keeps_probes": True})
    for pid, r in results.items():
        assert [row["sample_index"] for row in rows[pid]] == [0, 1, 2]
        assert r["samples"] == 3 and r["tokens"] == sum(row["num_tokens"] for row in rows[pid])
        assert r["accuracy"] == pytest.approx(_best(rows[pid])) and _picked(r, rows[pid])


def test_eval_plan_stop_rule_stops_at_a_probe_that_reaches_the_threshold(tmp_path):
    threshold, cap = -4.5, 3  # about the median mean log-probability of the untrained tiny model's samples
    results, rows = _apply(tmp_path, {"temperature": 0.5, "rule": "bon:confidence", "n": cap, "method": "sequential",
                                      "threshold": threshold, "keeps_probes": True})
    stopped_at_probe = 0
    for pid, r in results.items():
        probe, fresh = rows[pid][0], rows[pid][1:]
        if probe["score_confidence"] >= threshold:
            stopped_at_probe += 1
            assert fresh == [] and r["accuracy"] == probe["reward"] and r["samples"] == 1
            continue
        reached = [i for i, row in enumerate(fresh) if row["score_confidence"] >= threshold]
        assert len(fresh) == (min(reached[0] + 1, cap) if reached else cap) and r["samples"] == len(fresh) + 1
        assert r["accuracy"] == pytest.approx(_best(rows[pid])) and _picked(r, rows[pid])
    assert 0 < stopped_at_probe < len(results), "every prompt or none stopped at its probe: the test shows nothing"


def test_eval_plan_keeps_every_probe_at_another_temperature(tmp_path):
    """Two probes at T = 1 and a strategy at T = 0.5: Best-of-N selects among both probes and the fresh samples;
    the stop rule stops before drawing if either probe reaches the threshold."""
    results, rows = _apply(tmp_path / "parallel", {"temperature": 0.5, "rule": "bon:confidence", "n": 1,
                                                   "keeps_probes": True}, probe=(1.0, 2))
    for pid, r in results.items():
        assert [(row["temperature"], row["sample_index"]) for row in rows[pid]] == [(1.0, 0), (1.0, 1), (0.5, 2)]
        assert r["samples"] == 3 and r["accuracy"] == pytest.approx(_best(rows[pid])) and _picked(r, rows[pid])
    threshold = -4.5
    results, rows = _apply(tmp_path / "stop", {"temperature": 0.5, "rule": "bon:confidence", "n": 2,
                                               "method": "sequential", "threshold": threshold, "keeps_probes": True},
                           probe=(1.0, 2))
    kinds = set()
    for pid, r in results.items():
        probes, fresh = rows[pid][:2], rows[pid][2:]
        scores = [row["score_confidence"] for row in probes]
        if max(scores) >= threshold:
            kinds.add("first" if scores[0] >= threshold else "second")
            assert fresh == [] and r["samples"] == 2 and r["accuracy"] == pytest.approx(_best(probes))
            assert _picked(r, probes)
        else:
            reached = [i for i, row in enumerate(fresh) if row["score_confidence"] >= threshold]
            assert len(fresh) == (min(reached[0] + 1, 2) if reached else 2) and r["samples"] == len(fresh) + 2
            assert r["accuracy"] == pytest.approx(_best(rows[pid])) and _picked(r, rows[pid])
    assert "second" in kinds, "no prompt stopped on its second probe alone: the test shows nothing for m > 1"


def test_eval_plan_breaks_each_prompts_ties_with_its_own_seeded_generator(tmp_path, monkeypatch):
    """Every selection `eval --plan` makes, by Best-of-N and by the stop rule, gets the prompt's tie generator
    (seeded by the run's seed and the prompt id), fresh, so that ties are broken as the values assume."""
    from infertune.planning import apply

    seen = []
    select = apply._select

    def recording(rule, rows, rng=None):
        seen.append((rows[0]["prompt_id"], None if rng is None else rng.bit_generator.state))
        return select(rule, rows, rng)

    monkeypatch.setattr(apply, "_select", recording)
    for name, strategy in (("bon", {"temperature": 0.5, "rule": "bon:confidence", "n": 2, "keeps_probes": True}),
                           ("stop", {"temperature": 0.5, "rule": "bon:confidence", "n": 2, "method": "sequential",
                                     "threshold": -4.5, "keeps_probes": True})):
        seen.clear()
        results, _ = _apply(tmp_path / name, strategy)
        assert sorted(pid for pid, _ in seen) == sorted(results), name  # one selection per prompt
        assert all(state == apply._ties(0, pid).bit_generator.state for pid, state in seen), name
