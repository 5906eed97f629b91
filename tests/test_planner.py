"""The planner: exact per-bin choice under a budget, leak-free cross-validation, and the co-scaling fit."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertune import planning as planner
from infertune.planning import planner as plan_module
from infertune.planning.knapsack import BudgetTooSmall
from infertune.planning import Strategy, StrategyTable, choose_per_bin, coscaling_fit, plan
from infertune.store import SampleStore
from infertune.synthetic import SyntheticConfig, write_run


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3), st.integers(2, 5), st.integers(0, 10_000), st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0]),
       st.booleans())
def test_choose_per_bin_equals_brute_force(bins, n_strategies, seed, budget, per_bin_costs):
    """Exact against enumeration of every choice, with costs shared by all bins (samples) or differing by bin
    (tokens: a strategy's cost depends on the prompts)."""
    rng = np.random.default_rng(seed)
    acc = rng.random((bins, n_strategies)).round(3)
    costs = (rng.random((bins, n_strategies)) * 4 + 0.5).round(2) if per_bin_costs else rng.integers(1, 5, n_strategies)
    cost_of = (lambda b, s: costs[b, s]) if per_bin_costs else (lambda b, s: costs[s])
    cheapest = min(range(n_strategies), key=lambda s: max(cost_of(b, s) for b in range(bins)))
    for b in range(bins):  # something always fits
        if per_bin_costs:
            costs[b, cheapest] = 0.5
        else:
            costs[cheapest] = 1
    weights = rng.dirichlet(np.ones(bins))
    best = -1.0
    for combo in itertools.product(range(n_strategies), repeat=bins):
        spend = sum(weights[b] * cost_of(b, s) for b, s in enumerate(combo))
        if spend <= budget + 1e-9:
            best = max(best, sum(weights[b] * acc[b, s] for b, s in enumerate(combo)))
    chosen, value = choose_per_bin(acc, costs, weights, budget)
    assert value == pytest.approx(best, abs=1e-12)
    assert sum(weights[b] * cost_of(b, s) for b, s in enumerate(chosen)) <= budget + 1e-9
    assert value == pytest.approx(sum(weights[b] * acc[b, s] for b, s in enumerate(chosen)))


def _table(n_prompts=100, seed=0):
    """Easy prompts are solved with 1 sample, hard ones need 8: a plan should spend samples on the hard ones."""
    rng = np.random.default_rng(seed)
    hardness = rng.random(n_prompts)
    strategies = [Strategy(1.0, "bon:v", n) for n in (1, 2, 4, 8)]
    p1 = np.clip(1 - hardness, 0.02, 0.98)
    values = np.stack([1 - (1 - p1) ** n for n in (1, 2, 4, 8)], axis=1)
    return StrategyTable(strategies, values, [str(i) for i in range(n_prompts)]), hardness


def test_cross_validation_never_fits_on_a_prompts_own_fold(monkeypatch):
    """Every fit that decides a fold's strategies (the plan, and the guard's inner cross-validation) sees only the
    other folds' prompts; the saved plan is fitted on everything."""
    table, hardness = _table()
    calls = []
    real_fit = plan_module._fit

    def recording_fit(pb, train):
        calls.append(set(train.tolist()))
        return real_fit(pb, train)

    monkeypatch.setattr(plan_module, "_fit", recording_fit)
    folds, inner = 5, 4
    plan(table, hardness, budget=3, folds=folds, seed=7, inner_folds=inner, resamples=0)
    # First the budget checks: the saved plan on everything, then each fold's training prompts.
    assert calls[0] == set(range(len(hardness)))
    fold_of = np.random.default_rng(7).permutation(len(hardness)) % folds
    assert calls[1 : 1 + folds] == [set(np.flatnonzero(fold_of != f).tolist()) for f in range(folds)]
    calls = calls[1 + folds :]
    for f in range(folds):
        group = calls[f * (inner + 1) : (f + 1) * (inner + 1)]
        test = set(np.flatnonzero(fold_of == f).tolist())
        assert group[0] | test == set(range(len(hardness))) and not group[0] & test
        assert all(c < group[0] for c in group[1:])  # the guard's inner folds split the fold's training prompts
    assert len(calls) == folds * (inner + 1) + folds  # then the unguarded cross-validation of the saved plan


def test_a_prompts_own_values_do_not_change_its_strategy():
    table, hardness = _table()
    base = plan(table, hardness, budget=3, folds=5, seed=1, resamples=0)
    fold_of = np.random.default_rng(1).permutation(len(hardness)) % 5
    target = np.flatnonzero(fold_of == 0)
    poisoned = StrategyTable(table.strategies, table.values.copy(), table.prompt_ids)
    poisoned.values[target] = np.random.default_rng(3).random((target.size, len(table.strategies)))
    again = plan(poisoned, hardness, budget=3, folds=5, seed=1, resamples=0)
    # What fold 0 scores changed; the strategies fold 0 was given, chosen from the other folds, did not.
    np.testing.assert_array_equal(again.assignments[target], base.assignments[target])


def test_adaptive_plan_spends_on_hard_prompts_and_beats_uniform():
    table, hardness = _table(400)
    result = plan(table, hardness, budget=3, folds=5, seed=0, resamples=40)
    ns = [s["n"] for s in result.spec["strategies"]]
    assert ns == sorted(ns) and ns[0] < ns[-1]  # harder bins get more samples
    assert result.adaptive_accuracy > result.uniform_accuracy
    assert isinstance(result.efficiency_ratio, float) and result.efficiency_ratio > 1
    low, high = result.efficiency_ratio_ci
    assert low <= result.efficiency_ratio <= high


def test_coscaling_fit_recovers_a_known_law():
    n = np.arange(1, 65)
    truth = {0.5: (-1.2, -0.3), 1.0: (-2.0, -0.6)}
    fits = coscaling_fit({t: np.exp(a * n**b) for t, (a, b) in truth.items()})
    for f in fits:
        a, b = truth[f["temperature"]]
        assert f["a"] == pytest.approx(a, rel=1e-4) and f["b"] == pytest.approx(b, rel=1e-4)
        assert f["r2"] > 0.9999
    ns = [1, 4, 64]
    best = planner.best_temperature(fits, ns)
    expected = [max(truth, key=lambda t: np.exp(truth[t][0] * m ** truth[t][1])) for m in ns]
    assert [row["best_temperature"] for row in best] == expected == [0.5, 0.5, 1.0]  # the best T grows with N


def test_plan_on_a_synthetic_run_end_to_end(tmp_path):
    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=120, n=16, temperatures=[0.5, 1.0], seed=2))
    store = SampleStore(tmp_path)
    samples = {t: store.scored(temperature=t) for t in (0.5, 1.0)}
    table = planner.strategy_table(samples)
    assert {s.rule for s in table.strategies} == {"maj", "bon:orm", "bon:confidence", "wmaj:orm", "wmaj:confidence"}
    hardness = planner.difficulty(samples, "predicted", "orm")
    result = plan(table, hardness, budget=4, bins=3, folds=4, resamples=0)
    assert 0 < result.adaptive_accuracy <= 1 and len(result.spec["strategies"]) == 3
    with pytest.raises(ValueError, match="below the cheapest"):
        plan(table, hardness, budget=0.5, bins=3, folds=4, resamples=0)


def test_plan_command_prints_the_table_ratio_and_writes_the_plan(tmp_path):
    import json

    from typer.testing import CliRunner

    from infertune.cli import app

    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=100, n=16, temperatures=[0.5, 1.0], seed=4))
    too_small = CliRunner().invoke(app, ["plan", str(tmp_path), "--budget", "3", "--verifier", "orm"])
    assert too_small.exit_code == 2 and "probe samples" in too_small.output
    result = CliRunner().invoke(app, ["plan", str(tmp_path), "--budget", "4", "--bins", "3", "--folds", "4",
                                      "--verifier", "orm", "--probe-samples", "2", "--curve", "4", "--curve", "8",
                                      "--bootstrap", "10"],
                                env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "cross-validated accuracy: adaptive" in result.output and "co-scaling fit" in result.output
    assert "efficiency curve" in result.output and "guard:" in result.output
    spec = json.loads((tmp_path / "plan" / "plan.json").read_text())
    summary = json.loads((tmp_path / "plan" / "summary.json").read_text())
    assert [row["budget"] for row in summary["curve"]] == [4, 8]
    if spec["guard"]["plan_is_uniform"]:
        assert spec["difficulty"] == "none" and len(spec["strategies"]) == 1
    else:
        assert "2 probes at T=0.5 included" in result.output
        assert spec["difficulty"] == "predicted" and len(spec["strategies"]) == 3 and spec["verifier"] == "orm"
    assert (tmp_path / "plan" / "coscaling.png").exists() and (tmp_path / "plan" / "curve.png").exists()
    bad = CliRunner().invoke(app, ["plan", str(tmp_path), "--difficulty", "psychic"])
    assert bad.exit_code != 0


def test_probe_samples_are_counted_in_the_budget_and_the_ratio():
    """With predicted difficulty, m probe samples are drawn first and a bin's N samples after them: every strategy
    costs N + m. The knapsack spends within the budget counted that way, and the efficiency ratio divides by what
    the plan really drew, probes included."""
    table, hardness = _table(400)
    costs = planner.strategy_costs(table, (1.0, 2))
    assert costs.tolist() == [3, 4, 6, 10]
    free = plan(table, hardness, budget=6, folds=5, seed=0, guard=False, resamples=0)
    probed = plan(table, hardness, budget=6, folds=5, seed=0, probe=(1.0, 2), guard=False, resamples=0)
    assert free.adaptive_spend <= 6 + 1e-9 and probed.adaptive_spend <= 6 + 1e-9
    spent = costs[probed.assignments].mean()
    assert probed.adaptive_spend == pytest.approx(spent)
    assert probed.efficiency_ratio == pytest.approx(probed.uniform_budget_to_match / spent)
    assert probed.adaptive_accuracy <= free.adaptive_accuracy + 1e-12  # probes take budget away


def test_token_costs_per_prompt_are_what_the_plan_spends():
    """In tokens, a strategy's cost differs by prompt (and probes cost what the probes drew): the knapsack uses
    each bin's mean cost, the reported spend is the mean of the assigned prompts' own costs and probes, and the
    budget and spend are in sample-equivalents (tokens / unit size)."""
    table, hardness = _table(300)
    rng = np.random.default_rng(5)
    length = rng.uniform(6, 14, len(hardness))  # tokens per sample differ by prompt
    table.costs = np.outer(length, [s.n for s in table.strategies])
    table.unit, table.unit_size = "tokens", 10.0
    probe_costs = 2 * length
    result = plan(table, hardness, budget=5, folds=5, seed=0, probe=(1.0, 2), probe_costs=probe_costs, guard=False,
                  resamples=0)
    spent = (table.costs[np.arange(len(hardness)), result.assignments] + probe_costs).mean() / 10.0
    assert result.adaptive_spend == pytest.approx(spent) and result.unit == "tokens"
    assert result.uniform_curve[0][1] == pytest.approx(length.mean() / 10.0)  # Best-of-1 costs one sample


def test_the_guard_never_leaves_a_plan_worse_than_uniform_best_of_n():
    """Strategies that are pure noise per prompt look good within a bin on the prompts that chose them and are
    worse than Best-of-N on others. Cross-validation does not show the adaptive plan beating uniform Best-of-N,
    so the saved plan is uniform Best-of-N at the best N the budget affords (one bin, no probes), and the guarded
    procedure's cross-validated accuracy is no worse than the unguarded one's."""
    rng = np.random.default_rng(0)
    n_prompts = 200
    hardness = rng.random(n_prompts)  # says nothing about the prompt
    bon = [Strategy(1.0, "bon:v", n) for n in (1, 2, 3, 4)]
    noise = [Strategy(1.0, "maj", 1) for _ in range(40)]
    values = np.concatenate([np.tile([0.3, 0.45, 0.55, 0.6], (n_prompts, 1)),
                             (rng.random((n_prompts, 40)) < 0.35).astype(float)], axis=1)
    table = StrategyTable(bon + noise, values, [str(i) for i in range(n_prompts)])
    unguarded = plan(table, hardness, budget=3, folds=5, seed=1, guard=False, resamples=0)
    guarded = plan(table, hardness, budget=3, folds=5, seed=1, resamples=0)
    assert unguarded.efficiency_ratio is None or unguarded.efficiency_ratio < 1
    assert guarded.guard["plan_is_uniform"] and guarded.spec["difficulty"] == "none"
    assert guarded.spec["bin_edges"] == [] and guarded.spec["strategies"] == [asdict(Strategy(1.0, "bon:v", 3))]
    assert guarded.probe is None and guarded.guard["folds_uniform"] == 5
    assert guarded.adaptive_accuracy >= unguarded.adaptive_accuracy
    assert guarded.efficiency_ratio == pytest.approx(1.0)


def test_the_fallback_is_the_best_uniform_n_within_the_budget_not_the_largest():
    """With an imperfect verifier Best-of-N can fall as N grows; the guard's uniform plan takes the most accurate
    N the budget affords."""
    rng = np.random.default_rng(1)
    n_prompts = 100
    bon = [Strategy(1.0, "bon:v", n) for n in (1, 2, 3, 4)]
    noise = [Strategy(1.0, "maj", 1) for _ in range(20)]
    values = np.concatenate([np.tile([0.3, 0.5, 0.45, 0.4], (n_prompts, 1)),
                             (rng.random((n_prompts, 20)) < 0.2).astype(float)], axis=1)
    table = StrategyTable(bon + noise, values, [str(i) for i in range(n_prompts)])
    result = plan(table, rng.random(n_prompts), budget=4, folds=5, seed=0, resamples=0)
    assert result.guard["plan_is_uniform"] and result.spec["strategies"] == [asdict(Strategy(1.0, "bon:v", 2))]


def test_the_guard_keeps_a_plan_that_beats_uniform():
    table, hardness = _table(400)
    result = plan(table, hardness, budget=3, folds=5, seed=0, resamples=0)
    assert not result.guard["plan_is_uniform"] and result.guard["folds_uniform"] == 0
    assert result.efficiency_ratio > 1


def test_efficiency_curve_reports_every_budget_and_skips_those_below_the_probes():
    table, hardness = _table(200)
    rows = planner.efficiency_curve(table, hardness, [1, 2, 4, 8], folds=5, probe=(1.0, 2), resamples=20)
    assert [r["budget"] for r in rows] == [1, 2, 4, 8]
    assert "skipped" in rows[0] and "skipped" in rows[1]  # two probes and one sample cost 3
    for r in rows[2:]:
        assert r["adaptive_spend"] <= r["budget"] + 1e-9
        assert r["efficiency_ratio"] is None or r["efficiency_ratio_ci"][0] <= r["efficiency_ratio"] \
            <= r["efficiency_ratio_ci"][1]


def test_run_valued_strategies_are_the_mean_of_their_runs():
    from infertune.store import scored_from_arrays

    rewards = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=float)
    tokens = np.array([[10, 20, 30, 40], [5, 5, 5, 5], [8, 8, 8, 12]])
    samples = scored_from_arrays(["a", "b", "c"], rewards, np.full(rewards.shape, None, dtype=object),
                                 tokens=tokens)
    s = Strategy(1.0, "wmaj:prm", 8, "beam", width=4)
    t = planner.run_table(s, samples)
    np.testing.assert_allclose(t.values[:, 0], [0.75, 0.0, 1.0])
    np.testing.assert_allclose(t.costs[:, 0], [25, 5, 9])
    # p̂(1 − p̂)/(R − 1) is unbiased for the variance p(1 − p)/R of the mean of R Bernoulli runs.
    np.testing.assert_allclose(t.variances[:, 0], [0.75 * 0.25 / 3, 0, 0])


def test_strategies_are_valued_on_the_samples_after_the_probes(tmp_path):
    """The probes decide a prompt's bin, so the strategy it gets is valued on its other samples (indices m..n−1),
    which a plan applied to new prompts draws; valuing on the probes too would let the bin see the outcome."""
    write_run(SampleStore(tmp_path), SyntheticConfig(prompts=40, n=12, temperatures=[1.0], seed=2))
    samples = {1.0: SampleStore(tmp_path).scored(temperature=1.0)}
    full = planner.strategy_table(samples)
    after = planner.strategy_table(samples, skip=4)
    assert max(s.n for s in after.strategies) == 8 and max(s.n for s in full.strategies) == 12
    from infertune.evaluation import per_prompt_curves
    from infertune.store import sample_columns

    expected = per_prompt_curves(sample_columns(samples[1.0], 4), rules=["maj"])["maj"].values[:, 2]
    column = next(i for i, s in enumerate(after.strategies) if s.rule == "maj" and s.n == 3)
    np.testing.assert_allclose(after.values[:, column], expected)


def test_budget_to_match_mixes_sample_counts_along_the_concave_envelope():
    uniform = {1: 0.2, 2: 0.3, 4: 0.5, 8: 0.6}
    assert planner.budget_to_match(uniform, 0.1) == pytest.approx(0.5)  # N = 1 on half the prompts, none on the rest
    assert planner.budget_to_match(uniform, 0.25) == pytest.approx(1.5)
    assert planner.budget_to_match(uniform, 0.45) == pytest.approx(3.5)
    assert planner.budget_to_match(uniform, 0.7) is None
    # Not concave: mixing N = 1 and N = 3 half and half reaches 0.6 at an average of 2 samples, cheaper than
    # interpolating between neighbours (2.44).
    assert planner.budget_to_match({1: 0.5, 2: 0.52, 3: 0.7}, 0.6) == pytest.approx(2.0)


def test_a_cheaper_but_less_accurate_plan_is_not_credited():
    """A plan spending 0.8 samples for accuracy 0.2, where Best-of-1 costs 1 for 0.3: uniform reaches 0.2 at 2/3 of
    a sample (Best-of-1 on two prompts in three), so the ratio is below 1 and the guard does not keep the plan."""
    from infertune.planning.efficiency import beats_uniform, efficiency

    match, ratio = efficiency(0.2, 0.8, {1: 0.3, 2: 0.4}, {1: 1.0, 2: 2.0})
    assert match == pytest.approx(2 / 3) and ratio == pytest.approx(2 / 3 / 0.8)
    assert not beats_uniform(0.2, 0.8, {1: 0.3, 2: 0.4}, {1: 1.0, 2: 2.0})


def test_the_ratio_interval_refits_the_whole_plan_on_each_resample(monkeypatch):
    """Each bootstrap resample re-runs every fold's fit and the guard's inner fits (the interval covers the
    variance of the choices, not only of the prompts), and a prompt drawn more than once never sits on both sides
    of a fold."""
    table, hardness = _table()
    calls = []
    real_fit = plan_module._fit

    def recording_fit(pb, train):
        calls.append(train.copy())
        return real_fit(pb, train)

    monkeypatch.setattr(plan_module, "_fit", recording_fit)
    folds, inner, resamples = 5, 4, 3
    result = plan(table, hardness, budget=3, folds=folds, seed=2, inner_folds=inner, resamples=resamples)
    per_cv = folds * (inner + 1)
    # The budget checks (the saved plan's fit, then each fold's), the cross-validation, one per resample, and the
    # unguarded one that decides whether the saved plan is uniform.
    assert len(calls) == 1 + folds + per_cv + resamples * per_cv + folds
    assert len(calls[0]) == len(hardness)
    calls = calls[1 + folds :]
    resampled = []
    for r in range(resamples):
        outer = [Counter(train.tolist()) for train in calls[per_cv * (r + 1) : per_cv * (r + 2) : inner + 1]]
        # A prompt drawn c times is in folds - 1 training sets with all c copies: total c (folds - 1).
        drawn = {prompt: count // (folds - 1) for prompt, count in sum(outer, Counter()).items()}
        assert max(drawn.values()) > 1  # the resample repeats prompts
        resampled.append(drawn)
        for train in outer:
            assert all(train[prompt] in (0, copies) for prompt, copies in drawn.items())
    assert all(a != b for a, b in itertools.combinations(resampled, 2))  # each resample draws its own prompts
    low, high = result.efficiency_ratio_ci
    assert low <= result.efficiency_ratio <= high


def test_the_refit_interval_straddles_one_when_the_plan_is_uniform_best_of_n():
    """Noise strategies and a guard that falls back to uniform Best-of-N: the interval of a plan that is uniform
    Best-of-N itself does not claim an efficiency either way."""
    rng = np.random.default_rng(0)
    n_prompts = 200
    bon = [Strategy(1.0, "bon:v", n) for n in (1, 2, 3, 4)]
    noise = [Strategy(1.0, "maj", 1) for _ in range(40)]
    values = np.concatenate([(rng.random((n_prompts, 4)) < [0.3, 0.45, 0.55, 0.6]).astype(float),
                             (rng.random((n_prompts, 40)) < 0.35).astype(float)], axis=1)
    table = StrategyTable(bon + noise, values, [str(i) for i in range(n_prompts)])
    result = plan(table, rng.random(n_prompts), budget=3, folds=5, seed=1, resamples=60)
    low, high = result.efficiency_ratio_ci
    assert low < 1 < high or low == pytest.approx(1) == pytest.approx(high)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0]) | st.floats(0.1, 10), st.floats(0, 1)), min_size=1,
                max_size=6),
       st.floats(0.05, 12), st.floats(0, 1))
def test_envelope_at_is_the_inverse_of_budget_to_match(points, spend, accuracy):
    """A plan beats uniform Best-of-N at its spend (efficiency ratio above 1) exactly when its accuracy is above
    the envelope there: the guard's vectorised test and the reported ratio agree, two N at one cost included."""
    from infertune.planning.efficiency import beats_uniform, envelope_at

    costs = np.array([c for c, _ in points])
    accs = np.array([a for _, a in points])
    envelope = envelope_at(costs[None], accs[None], np.array([spend]))[0]
    wins = beats_uniform(accuracy, spend, dict(enumerate(accs)), dict(enumerate(costs)))
    if abs(accuracy - envelope) > 1e-9:
        assert wins == (accuracy > envelope)


def test_win_share_is_all_or_nothing_for_plans_that_always_or_never_win():
    from infertune.planning.efficiency import win_share

    rng = np.random.default_rng(0)
    second = rng.random(50)
    uniform_acc = {1: second / 2, 2: second}
    uniform_cost = {1: np.ones(50), 2: np.full(50, 2.0)}
    # Uniform Best-of-2 itself at its own cost never beats uniform; anything better on every prompt always does.
    assert win_share(uniform_acc[2], uniform_cost[2], uniform_acc, uniform_cost, 200, 0) == 0.0
    assert win_share(uniform_acc[2] + 0.1, uniform_cost[2], uniform_acc, uniform_cost, 200, 0) == 1.0


def test_the_guard_with_confidence_keeps_fewer_lucky_plans_than_the_mean_alone():
    """Twenty strategies exactly as good as Best-of-3 at its cost: whatever a fold's plan gains on them is luck.
    Asking for a win in 95% of bootstrap resamples lets fewer of them through than the mean alone, and the saved
    plan is uniform Best-of-N."""
    rng = np.random.default_rng(0)
    n_prompts = 200
    strategies = [Strategy(1.0, "bon:v", n) for n in (1, 2, 3, 4)] + [Strategy(1.0, "maj", 3) for _ in range(20)]
    values = (rng.random((n_prompts, 24)) < np.array([0.3, 0.45, 0.55, 0.6] + [0.55] * 20)).astype(float)
    table = StrategyTable(strategies, values, [str(i) for i in range(n_prompts)])
    hardness = rng.random(n_prompts)
    mean_only = plan(table, hardness, budget=3, folds=5, seed=1, resamples=0, guard_confidence=0.0)
    tested = plan(table, hardness, budget=3, folds=5, seed=1, resamples=0, guard_confidence=0.95)
    assert tested.guard["folds_uniform"] > mean_only.guard["folds_uniform"]
    assert tested.guard["plan_is_uniform"] and not mean_only.guard["plan_is_uniform"]


def test_the_fallback_takes_the_cheapest_n_within_a_standard_error_of_the_best():
    """On a flat stretch of the Best-of-N curve the most accurate N on the training prompts is noise: with the
    one-standard-error rule the fallback is the cheaper N that is as good within its error."""
    rng = np.random.default_rng(3)
    n_prompts = 200
    bon = [Strategy(1.0, "bon:v", n) for n in (1, 2, 3, 4)]
    noise = [Strategy(1.0, "maj", 1) for _ in range(20)]
    flat = (rng.random((n_prompts, 1)) < 0.5).astype(float)
    best = flat.copy()  # Best-of-4: better than Best-of-2 and 3 on four prompts, worse on two (+1 point)
    best[rng.choice(np.flatnonzero(flat[:, 0] == 0), 4, replace=False)] = 1.0
    best[rng.choice(np.flatnonzero(flat[:, 0] == 1), 2, replace=False)] = 0.0
    values = np.concatenate([(rng.random((n_prompts, 1)) < 0.3).astype(float), flat, flat, best,
                             (rng.random((n_prompts, 20)) < 0.2).astype(float)], axis=1)
    table = StrategyTable(bon + noise, values, [str(i) for i in range(n_prompts)])
    hardness = rng.random(n_prompts)
    most_accurate = plan(table, hardness, budget=4, folds=5, seed=0, resamples=0, fallback_se=0.0)
    one_se = plan(table, hardness, budget=4, folds=5, seed=0, resamples=0, fallback_se=1.0)
    assert most_accurate.guard["plan_is_uniform"] and one_se.guard["plan_is_uniform"]
    assert most_accurate.spec["strategies"] == [asdict(Strategy(1.0, "bon:v", 4))]
    assert one_se.spec["strategies"] == [asdict(Strategy(1.0, "bon:v", 2))]


def test_the_fallbacks_standard_error_is_paired_by_prompt():
    """Best-of-4 solves everything Best-of-2 solves and six prompts more (+3 points): a paired standard error (about
    1.2 points) shows it better, so the fallback keeps it; an unpaired one (about 5 points) would not."""
    rng = np.random.default_rng(4)
    n_prompts = 200
    flat = (rng.random((n_prompts, 1)) < 0.5).astype(float)
    best = flat.copy()
    best[rng.choice(np.flatnonzero(flat[:, 0] == 0), 6, replace=False)] = 1.0
    values = np.concatenate([(rng.random((n_prompts, 1)) < 0.3).astype(float), flat, flat, best,
                             (rng.random((n_prompts, 20)) < 0.2).astype(float)], axis=1)
    strategies = [Strategy(1.0, "bon:v", n) for n in (1, 2, 3, 4)] + [Strategy(1.0, "maj", 1) for _ in range(20)]
    table = StrategyTable(strategies, values, [str(i) for i in range(n_prompts)])
    result = plan(table, rng.random(n_prompts), budget=4, folds=5, seed=0, resamples=0, fallback_se=1.0)
    assert result.guard["plan_is_uniform"] and result.spec["strategies"] == [asdict(Strategy(1.0, "bon:v", 4))]


def test_resamples_uniform_never_matches_are_reported_as_bounds():
    """A strategy far better than every Best-of-N: uniform never matches it, so the point ratio is None and the
    interval's ends are lower bounds, which the result says (and `plan` prints the upper end as "≥")."""
    from infertune.views import _efficiency_words

    rng = np.random.default_rng(0)
    n_prompts = 100
    strategies = [Strategy(1.0, "bon:v", n) for n in (1, 2, 3, 4)] + [Strategy(1.0, "maj", 2)]
    values = (rng.random((n_prompts, 5)) < np.array([0.2, 0.3, 0.35, 0.4, 0.95])).astype(float)
    table = StrategyTable(strategies, values, [str(i) for i in range(n_prompts)])
    result = plan(table, rng.random(n_prompts), budget=2, folds=5, seed=0, resamples=50)
    assert result.efficiency_ratio is None and result.efficiency_ratio_ci_capped > 0.9
    words = _efficiency_words(result.efficiency_ratio, result.efficiency_ratio_ci, None, 4, result.adaptive_spend,
                              result.efficiency_ratio_ci_capped)
    assert "does not match it" in words and "-≥" in words


def test_a_budget_some_fold_cannot_afford_is_refused_before_any_figure_and_left_out_of_the_interval():
    """Probes counted in tokens cost each prompt something else, so a budget just above their mean can lie below a
    fold's training prompts': no plan fits there. plan refuses it at once, naming the fold and the cost in
    sample-equivalents (a fold answered by uniform Best-of-N would make the cross-validated ratio a mix of plan and
    baseline); bootstrap resamples with such a fold are left out of the interval and counted."""
    table, hardness = _table(60, seed=3)
    kept = Strategy(1.0, "bon:v", 0, keeps_probes=True)  # answers with the probe: costs the probe alone
    values = np.column_stack([table.values, 0.5 * table.values[:, 0]])  # worse than Best-of-1: a mix would show
    table = StrategyTable([*table.strategies, kept], values, table.prompt_ids)
    probe_costs = np.random.default_rng(3).uniform(0.2, 1.8, len(hardness))
    options = dict(bins=1, folds=5, probe=(1.0, 1), probe_costs=probe_costs, guard=False)
    fold_of = np.random.default_rng(0).permutation(len(hardness)) % 5
    train_cost = [probe_costs[fold_of != f].mean() for f in range(5)]
    budget = float(probe_costs.mean()) + 1e-3  # only the kept probe fits, and not on every fold's training prompts
    first = next(f for f in range(5) if train_cost[f] > budget)  # the first fold that cannot afford it is named
    with pytest.raises(BudgetTooSmall, match=rf"cheapest plan on the training prompts of fold {first + 1} "
                                             rf"\({train_cost[first]:.4g} sample-equivalents per prompt, "
                                             rf"{train_cost[first]:.4g} of them probes\)"):
        plan(table, hardness, budget=budget, resamples=0, **options)
    with pytest.raises(BudgetTooSmall, match=rf"budget 0.5 is below the cheapest plan on these prompts "
                                             rf"\({probe_costs.mean():.4g} sample-equivalents"):
        plan(table, hardness, budget=0.5, resamples=0, **options)
    # Every fold affords the kept probe; some resamples' folds do not: left out, and with more than 2.5% of them
    # left out there is no interval (it would hold only for the resamples that happened to afford the budget).
    budget = max(train_cost) + 1e-3
    result = plan(table, hardness, budget=budget, resamples=40, **options)
    assert (result.assignments == len(table.strategies) - 1).all()  # every fold's plan is the kept probe
    assert result.adaptive_accuracy == pytest.approx(values[:, -1].mean())
    assert 0.025 < result.efficiency_ratio_ci_over_budget < 1 and result.efficiency_ratio_ci is None
    assert plan(table, hardness, budget=budget + 0.3, resamples=40, **options).efficiency_ratio_ci is not None
