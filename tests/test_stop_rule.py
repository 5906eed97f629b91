"""Best-of-N with a verifier stop rule: its exact value and cost against enumeration of every draw order, its place
in the planner's table, plans without probes, and applying it to new prompts one round at a time."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertune import planning as planner
from infertune.estimators import bon_curve
from infertune.planning import PLAN_FORMAT, Strategy, load_plan
from infertune.estimators import stop_curves
from infertune.planning.sequential import score_thresholds
from infertune.store import SampleStore
from infertune.synthetic import SyntheticConfig, write_run

from plan_cli import eval_plan


def _enumerate(scores, rewards, tokens, threshold, cap):
    """Mean reward, draws and tokens of the rule over every ordered cap-tuple of distinct samples, each equally
    likely (what drawing without replacement from the pool gives), ties in the final pick split evenly."""
    values, draws, spent = [], [], []
    for order in itertools.permutations(range(len(scores)), cap):
        drawn = []
        for i in order:
            drawn.append(i)
            if scores[i] >= threshold:
                break
        best = max(scores[i] for i in drawn)
        values.append(np.mean([rewards[i] for i in drawn if scores[i] == best]))
        draws.append(len(drawn))
        spent.append(sum(tokens[i] for i in drawn))
    return np.mean(values), np.mean(draws), np.mean(spent)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-np.inf, 0, 1, 2, 3]), st.sampled_from([0.0, 0.5, 1.0]),
                          st.integers(1, 9)), min_size=1, max_size=6),
       st.sampled_from([-1.0, 0.5, 1.0, 2.5, 9.0]))
def test_stop_rule_values_draws_and_tokens_equal_enumeration(pool, threshold):
    scores, rewards, tokens = (np.array([[row[i] for row in pool]], dtype=np.float64) for i in range(3))
    values, draws, spent = stop_curves(scores, rewards, tokens, threshold)
    for cap in range(1, len(pool) + 1):
        expected = _enumerate(scores[0], rewards[0], tokens[0], threshold, cap)
        assert (values[0, cap - 1], draws[0, cap - 1], spent[0, cap - 1]) == pytest.approx(expected)


def test_the_stop_rule_spans_one_sample_and_best_of_n():
    """A threshold every sample reaches stops at the first draw (pass@1 at one sample's cost); one none reaches
    never stops early (Best-of-N at N samples)."""
    rng = np.random.default_rng(0)
    scores, rewards = rng.random((30, 12)), (rng.random((30, 12)) < 0.4).astype(float)
    tokens = rng.integers(3, 9, (30, 12)).astype(float)
    values, draws, spent = stop_curves(scores, rewards, tokens, threshold=-1.0)
    np.testing.assert_allclose(values, np.repeat(rewards.mean(axis=1, keepdims=True), 12, axis=1))
    np.testing.assert_allclose(draws, 1.0)
    np.testing.assert_allclose(spent, np.repeat(tokens.mean(axis=1, keepdims=True), 12, axis=1))
    values, draws, spent = stop_curves(scores, rewards, tokens, threshold=2.0)
    np.testing.assert_allclose(values, bon_curve(scores, rewards))
    np.testing.assert_allclose(draws, np.broadcast_to(np.arange(1, 13), (30, 12)))
    np.testing.assert_allclose(spent, np.arange(1, 13) * tokens.mean(axis=1, keepdims=True))


def test_thresholds_are_distinct_quantiles_of_the_scores_and_keep_scores_near_one_apart():
    scores = np.concatenate([np.zeros(50), np.linspace(0, 1, 51)])
    assert score_thresholds(scores, [0.1, 0.2, 0.9]) == [0.0, pytest.approx(0.8)]
    assert score_thresholds(np.array([np.nan]), [0.5]) == []
    near_one = 1 - 10.0 ** -np.random.default_rng(0).uniform(2, 6, 10_000)  # a sigmoid verifier's crowded top
    thresholds = score_thresholds(near_one, [0.5, 0.75, 0.9, 0.95, 0.98])
    assert len(thresholds) == 5 and max(thresholds) < near_one.max()


def test_a_threshold_belongs_to_sequential_strategies_only():
    with pytest.raises(ValueError, match="threshold"):
        Strategy(1.0, "bon:orm", 4, "sequential")
    with pytest.raises(ValueError, match="threshold"):
        Strategy(1.0, "bon:orm", 4, threshold=0.5)
    with pytest.raises(ValueError, match="bon:<verifier>"):
        Strategy(1.0, "maj", 4, "sequential", threshold=0.5)
    assert Strategy(0.5, "bon:orm", 8, "sequential", threshold=0.75).label() == "stop>=0.75 bon:orm@8 T=0.5"


def test_stop_table_values_every_verifier_threshold_and_cap_after_the_probes(tmp_path):
    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=40, n=10, temperatures=[0.5, 1.0], seed=3))
    store = SampleStore(tmp_path)
    samples = {t: store.scored(temperature=t) for t in (0.5, 1.0)}
    table = planner.stop_table(samples, quantiles=[0.5, 0.9], caps=[2, 4, 50], skip=2, unit="samples")
    verifiers = {s.rule for s in table.strategies}
    assert verifiers == {"bon:orm", "bon:confidence"}
    assert {s.n for s in table.strategies} == {2, 4}  # a cap beyond the 8 samples after the probes is left out
    assert len(table.strategies) == 2 * 2 * 2 * 2  # verifiers x thresholds x temperatures x caps
    j = next(i for i, s in enumerate(table.strategies) if s.rule == "bon:orm" and s.temperature == 1.0 and s.n == 4)
    s = table.strategies[j]
    pool = samples[1.0]
    values, draws, _ = stop_curves(pool.scores["orm"][:, 2:], pool.rewards[:, 2:], np.ones((40, 8)), s.threshold)
    np.testing.assert_allclose(table.values[:, j], values[:, 3])
    np.testing.assert_allclose(table.costs[:, j], draws[:, 3])
    assert planner.stop_table(samples, quantiles=[], caps=[2]) is None
    # One threshold set for every temperature, from the scores after the probes at all temperatures.
    pooled = np.concatenate([samples[t].scores["orm"][:, 2:].ravel() for t in (0.5, 1.0)])
    assert sorted({s.threshold for s in table.strategies if s.rule == "bon:orm"}) == score_thresholds(pooled,
                                                                                                     [0.5, 0.9])
    # In tokens: the expected tokens drawn, per prompt.
    tokens = planner.stop_table(samples, quantiles=[0.9], caps=[4], skip=2, unit="tokens")
    k = next(i for i, s in enumerate(tokens.strategies) if s.rule == "bon:orm" and s.temperature == 1.0)
    _, _, spent = stop_curves(pool.scores["orm"][:, 2:], pool.rewards[:, 2:], pool.tokens[:, 2:],
                              tokens.strategies[k].threshold)
    np.testing.assert_allclose(tokens.costs[:, k], spent[:, 3])


def test_the_uniform_baseline_never_includes_a_stop_rule(tmp_path):
    from infertune.planning.planner import _uniform_candidates

    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=40, n=10, temperatures=[1.0], seed=3))
    samples = {1.0: SampleStore(tmp_path).scored(temperature=1.0)}
    table = planner.combine([planner.strategy_table(samples),
                             planner.stop_table(samples, quantiles=[0.5], caps=[4, 8], unit="tokens")])
    chosen = {table.strategies[i].method for i in _uniform_candidates(table)}
    assert chosen == {"parallel"} and any(s.method == "sequential" for s in table.strategies)


def test_a_plan_without_probes_is_one_strategy_and_may_stop_early(tmp_path):
    """--probe-samples 0: one bin, nothing spent on probes; the stop rule competes with Best-of-N in the table and
    the saved plan loads as a plan without difficulty."""
    from infertune.planning import PlanConfig, plan_run, write_plan

    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=100, n=16, temperatures=[0.5, 1.0], seed=4))
    config = PlanConfig(budget=4, curve=[], probe_samples=0, verifier="orm", bootstrap=0, guard=False,
                        folds=4)
    run = plan_run(SampleStore(tmp_path), config)
    assert run.result.difficulty == "none" and run.result.probe is None
    assert len(run.result.spec["strategies"]) == 1 and run.result.spec["bin_edges"] == []
    assert run.strategies["sequential"]["strategies"] > 0
    # The plan fitted on every prompt keeps the budget on them (held-out folds' spend varies around it).
    assert run.result.per_bin[0]["cost"] <= 4 + 1e-9
    paths = write_plan(run, tmp_path / "plan")
    loaded = load_plan(paths["plan"])
    assert loaded.probe_samples == 0 and loaded.bin_edges.size == 0
    assert [asdict(s) for s in loaded.strategies] == run.result.spec["strategies"]
    off = plan_run(SampleStore(tmp_path), PlanConfig(budget=4, curve=[], probe_samples=0, bootstrap=0, guard=False,
                                                     folds=4, stop_rule=False))
    assert "sequential" not in off.strategies


def test_eval_plan_applies_the_stop_rule_one_round_at_a_time(tmp_path):
    """After the plan's probe (index 0 at T = 1), each prompt draws samples at indices 1, 2, ... at the stop rule's
    own temperature and stops at the first whose verifier score reaches the threshold, or at N; it is charged for
    the probe and what it drew, answers with the best-scored of the drawn samples (never the probe), and draws
    nothing past its stop."""
    threshold, cap = -4.5, 4  # about the median mean log-probability of the untrained tiny model's samples at T=0.5
    raw = {"format": PLAN_FORMAT, "difficulty": "predicted", "verifier": "confidence", "budget": 4,
           "probe": {"temperature": 1.0, "samples": 1}, "bin_edges": [100.0],  # every prompt in bin 0
           "strategies": [{"temperature": 0.5, "rule": "bon:confidence", "n": cap, "method": "sequential",
                           "threshold": threshold}, {"temperature": 1.0, "rule": "maj", "n": 2}], "task": "arith",
           "components": {"verifier_specs": {"confidence": "confidence=tiny"}}}
    results, out = eval_plan(tmp_path, raw)
    table = SampleStore(out).read().to_pylist()
    stops = set()
    for pid, r in results.items():
        probe = [row for row in table if row["prompt_id"] == pid and row["temperature"] == 1.0]
        assert [row["sample_index"] for row in probe] == [0]
        rows = sorted((row for row in table if row["prompt_id"] == pid and row["temperature"] == 0.5),
                      key=lambda row: row["sample_index"])
        scores = [row["score_confidence"] for row in rows]
        assert [row["sample_index"] for row in rows] == list(range(1, len(rows) + 1))
        reached = [i for i, s in enumerate(scores) if s >= threshold]
        drawn = min(reached[0] + 1, cap) if reached else cap
        assert r["samples"] == len(rows) + 1 and len(rows) == drawn
        assert r["tokens"] == sum(row["num_tokens"] for row in rows) + probe[0]["num_tokens"]
        best = max(scores)
        picked = [row["reward"] for row in rows if row["score_confidence"] == best]
        assert r["accuracy"] == pytest.approx(np.mean(picked))
        stops.add(drawn)
    assert len(stops) > 1, f"every prompt drew the same number of samples ({stops}): the test shows nothing"


def test_a_stop_rule_plan_refuses_another_verifier_and_bad_thresholds(tmp_path):
    """A threshold is a score of one verifier: applying it with another verifier of the same name is refused, as are
    thresholds that are not finite numbers and stop rules on agreement (whose scores change as samples arrive)."""
    from infertune.planning.apply import stop_rule_verifier_mismatch

    def written(**strategy):
        raw = {"format": PLAN_FORMAT, "difficulty": "none", "budget": 4, "bin_edges": [],
               "strategies": [{"temperature": 1.0, "rule": "bon:learned", "n": 4, "method": "sequential",
                               "threshold": 0.9, **strategy}],
               "components": {"verifier_specs": {"learned": f"learned={tmp_path / 'orm'}"}}}
        (tmp_path / "plan.json").write_text(json.dumps(raw))
        return tmp_path / "plan.json"

    (tmp_path / "orm").mkdir()
    plan = load_plan(written())
    assert stop_rule_verifier_mismatch(plan, [f"learned={tmp_path / 'orm'}"]) is None
    assert stop_rule_verifier_mismatch(plan, ["agreement"]) is None  # no learned given: the missing check names it
    assert "0.9" in stop_rule_verifier_mismatch(plan, [f"learned={tmp_path}"])
    assert "0.9" in stop_rule_verifier_mismatch(plan, [f"learned:{tmp_path}"])  # the registry's other spelling
    assert stop_rule_verifier_mismatch(plan, [f"learned:{tmp_path / 'orm'}"]) is None
    for bad in ("0.5", True, None):
        if bad is None:
            with pytest.raises(ValueError, match="sequential strategy needs one"):
                load_plan(written(threshold=None))
        else:
            with pytest.raises(ValueError, match="'threshold' should be a finite number"):
                load_plan(written(threshold=bad))
    with pytest.raises(ValueError, match="scores each sample on its own"):
        load_plan(written(rule="bon:agreement"))
    (tmp_path / "plan.json").write_text(json.dumps({**json.loads(written().read_text()), "strategies": [3]}))
    with pytest.raises(ValueError, match=r"'strategies'\[0\] should be an object"):
        load_plan(tmp_path / "plan.json")


def test_the_efficiency_plot_draws_an_interval_that_excludes_its_point(tmp_path):
    """A percentile bootstrap interval of refitted plans can sit wholly above or below the point estimate (seen in
    the planner benchmark: 0.983 with interval [0.984, 1.02]); the plot must draw it, not fail after the curve's
    bootstrap has run."""
    from infertune.planning.plots import plot_efficiency_curve

    rows = [{"budget": b, "efficiency_ratio": 0.983, "efficiency_ratio_ci": (0.984, 1.02), "adaptive_spend": b,
             "adaptive_accuracy": 0.2, "uniform_curve": [[1, 1.0, 0.1], [2, 2.0, 0.15]]} for b in (4, 8)]
    plot_efficiency_curve(rows, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0
