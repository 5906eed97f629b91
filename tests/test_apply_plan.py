"""eval --plan: selection rules against brute force, plan-file errors, and applying a plan end to end with
the difficulty computed exactly as plan computes it."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertune import planning as planner
from infertune.planning import PLAN_FORMAT, load_plan
from infertune.evaluation import selected_accuracy
from infertune.store import SampleStore


def _brute(rule, rewards, answers, scores):
    """Expected reward of the pick when every tied best candidate is equally likely."""
    if rule == "bon":
        best = max(scores)
        return float(np.mean([r for r, s in zip(rewards, scores) if s == best]))
    weight = Counter()
    for i, a in enumerate(answers):
        if a is not None:
            weight[a] += 1.0 if rule == "maj" else scores[i]
    if not weight:
        return 0.0
    top = max(weight.values())
    per_answer = [np.mean([r for r, b in zip(rewards, answers) if b == a]) for a in weight if weight[a] == top]
    return float(np.mean(per_answer))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "1", "2", "3"]), st.sampled_from([0.0, 0.5, 1.0])),
                min_size=1, max_size=8),
       st.sampled_from(["bon:v", "maj", "wmaj:v"]))
def test_selected_accuracy_equals_brute_force(pairs, rule):
    answers = [a for a, _ in pairs]
    scores = [s for _, s in pairs]
    gold = {"1": 1.0, "2": 0.0, "3": 0.0}
    rewards = [gold.get(a, 0.0) for a in answers]
    accuracy, pick = selected_accuracy(rule, rewards, answers, scores)
    assert accuracy == pytest.approx(_brute(rule.split(":")[0], rewards, answers, scores))
    assert 0 <= pick < len(answers)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "1", "2", "3"]), st.sampled_from([0.0, 0.5, 1.0])),
                min_size=1, max_size=8),
       st.sampled_from(["bon:v", "maj", "wmaj:v"]), st.integers(0, 2**32 - 1))
def test_a_pick_breaks_ties_uniformly_so_the_answer_written_is_what_the_value_assumes(pairs, rule, seed):
    """With a generator the pick is a tied best candidate: for Best-of-N any sample of top score, for votes a sample
    of a top-weighted answer, each tied answer equally likely; the mean reward of the picks is the value."""
    answers = [a for a, _ in pairs]
    scores = [s for _, s in pairs]
    rewards = [{"1": 1.0}.get(a, 0.0) for a in answers]
    accuracy, _ = selected_accuracy(rule, rewards, answers, scores)
    if rule == "bon:v":
        allowed = {i for i, v in enumerate(scores) if v == max(scores)}
    else:
        weight = Counter()
        for a, v in zip(answers, scores):
            if a is not None:
                weight[a] += 1.0 if rule == "maj" else v
        top = [a for a in weight if weight[a] == max(weight.values())]
        allowed = {i for i, a in enumerate(answers) if a in top} if weight else set(range(len(answers)))
    rng = np.random.default_rng(seed)
    picks = [selected_accuracy(rule, rewards, answers, scores, rng) for _ in range(400)]
    assert all(value == accuracy for value, _ in picks)
    assert {i for _, i in picks} == allowed  # every tied candidate can be written, and nothing else
    assert np.mean([rewards[i] for _, i in picks]) == pytest.approx(accuracy, abs=0.13)  # 5 s.e. of 400 draws


def test_a_weighted_vote_pick_draws_a_tied_answer_first_then_one_of_its_samples():
    """Exact frequencies on a tie between answers with unequal numbers of samples (a pick uniform over the pooled
    samples would give each 1/3), and weights that tie only up to rounding (0.1 + 0.2 against 0.3), as in the
    values."""
    answers, rewards = ["1", "1", "2"], [1.0, 1.0, 0.0]
    rng = np.random.default_rng(1)
    for scores in ([0.5, 0.5, 1.0], [0.1, 0.2, 0.3]):
        accuracy, _ = selected_accuracy("wmaj:v", rewards, answers, scores)
        assert accuracy == pytest.approx(0.5)
        counts = Counter(selected_accuracy("wmaj:v", rewards, answers, scores, rng)[1] for _ in range(4000))
        assert counts[2] / 4000 == pytest.approx(0.5, abs=0.03)
        assert counts[0] / 4000 == pytest.approx(0.25, abs=0.03) and counts[1] / 4000 == pytest.approx(0.25, abs=0.03)


def test_the_tie_generator_is_fixed_by_seed_and_prompt_and_takes_any_int_seed():
    from infertune.planning.apply import _ties

    draws = {(seed, pid): _ties(seed, pid).random() for seed in (-1, 0, 1) for pid in ("p", "q")}
    assert len(set(draws.values())) == len(draws)  # every (seed, prompt) draws its own ties
    assert all(_ties(seed, pid).random() == value for (seed, pid), value in draws.items())  # and the same each run


def test_a_revision_pick_breaks_ties_among_chains_then_within_one():
    """By a verifier, chains tied at the top score are equally likely, then the tied attempts within the chain."""
    from infertune.planning.apply import chain_pick

    def row(score, reward, name):
        return {"scores": {"v": score}, "reward": reward, "prompt_id": "p", "sample_index": 0, "name": name}

    chains = [[row(0.9, 1.0, "a0"), row(0.9, 0.0, "a1")], [row(0.9, 1.0, "b0"), row(0.2, 0.0, "b1")],
              [row(0.5, 1.0, "c0")]]
    accuracy, first = chain_pick("bon:v", chains)
    assert accuracy == pytest.approx((0.5 + 1.0) / 2) and first["name"] == "a0"
    rng = np.random.default_rng(0)
    counts = Counter(chain_pick("bon:v", chains, rng)[1]["name"] for _ in range(4000))
    assert set(counts) == {"a0", "a1", "b0"}
    assert counts["b0"] / 4000 == pytest.approx(0.5, abs=0.04) and counts["a0"] / 4000 == pytest.approx(0.25, abs=0.04)


def _policy(tmp_path, **overrides):
    raw = {"format": PLAN_FORMAT, "difficulty": "predicted", "verifier": "agreement", "budget": 4,
           "probe": {"temperature": 1.0, "samples": 3}, "bin_edges": [0.5],
           "strategies": [{"temperature": 1.0, "rule": "maj", "n": 5}, {"temperature": 0.5, "rule": "maj", "n": 2}],
           "task": "arith"}
    raw.update(overrides)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(raw))
    return path


def test_plan_file_errors_name_the_file_and_field(tmp_path):
    policy = load_plan(_policy(tmp_path))
    assert policy.probe_samples == 3 and [s.n for s in policy.strategies] == [5, 2]
    with pytest.raises(ValueError, match=r"plan.json: missing field 'bin_edges'"):
        raw = json.loads(_policy(tmp_path).read_text())
        del raw["bin_edges"]
        (tmp_path / "plan.json").write_text(json.dumps(raw))
        load_plan(tmp_path / "plan.json")
    with pytest.raises(ValueError, match=r"field 'difficulty' is 'oracle'"):
        load_plan(_policy(tmp_path, difficulty="oracle"))
    with pytest.raises(ValueError, match=r"field 'strategies'\[1\] needs temperature, rule and n"):
        load_plan(_policy(tmp_path, strategies=[{"temperature": 1, "rule": "maj", "n": 1}, {"rule": "maj"}]))
    with pytest.raises(ValueError, match="3 strategies for 2 bins"):
        load_plan(_policy(tmp_path, strategies=[{"temperature": 1, "rule": "maj", "n": 1}] * 3))
    with pytest.raises(FileNotFoundError, match="no such plan file"):
        load_plan(tmp_path / "missing.json")


@pytest.mark.parametrize("edge", [0.5, 1.5])
def test_eval_plan_end_to_end(tmp_path, edge):
    """The untrained tiny model's probes never agree (difficulty 1), so edge 0.5 sends every prompt to the hard bin
    (another temperature) and edge 1.5 to the easy one (the probe temperature). Either way the bin's N samples are
    new ones after the probes (indices m .. m + N − 1), never the probes themselves."""
    from typer.testing import CliRunner

    from infertune.cli import app

    path = _policy(tmp_path, bin_edges=[edge])
    out = tmp_path / "run"
    args = ["eval", "--task", "arith", "--task-option", "size=30", "--model", "tiny", "--limit", "12",
            "--max-new-tokens", "10", "--out", str(out), "--plan", str(path), "--verifier", "agreement"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "probing: 3 samples per prompt at T=1" in result.output
    results = [json.loads(line) for line in (out / "applied-plan" / "results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "applied-plan" / "summary.json").read_text())
    assert len(results) == summary["prompts"] == 12

    # The difficulty each prompt was binned by is the one plan computes from the same probe samples.
    store = SampleStore(out)
    probes = store.scored(temperature=1.0)
    expected = planner.difficulty({1.0: probes}, "predicted", "agreement", probe=(1.0, 3))
    got = {r["prompt_id"]: r["difficulty"] for r in results}
    np.testing.assert_allclose([got[pid] for pid in probes.prompt_ids], expected)

    # Cost: N + m everywhere; the bin's samples have indices 3 .. 3 + N − 1 at its temperature.
    table = store.read()
    rows = Counter(zip(table.column("prompt_id").to_pylist(), table.column("temperature").to_pylist()))
    indices: dict = {}
    for pid, t, i in zip(table.column("prompt_id").to_pylist(), table.column("temperature").to_pylist(),
                         table.column("sample_index").to_pylist()):
        indices.setdefault((pid, t), set()).add(i)
    for r in results:
        easy = r["difficulty"] < edge
        assert easy == (edge == 1.5)
        assert r["strategy"] == ("maj@5 T=1" if easy else "maj@2 T=0.5")
        assert r["samples"] == (5 + 3 if easy else 2 + 3)
        assert rows[(r["prompt_id"], 1.0)] == (3 + 5 if easy else 3)
        assert rows[(r["prompt_id"], 0.5)] == (0 if easy else 2)
        if not easy:
            assert indices[(r["prompt_id"], 0.5)] == {3, 4}
    assert summary["mean_samples"] == pytest.approx(np.mean([r["samples"] for r in results]))

    # Running it again samples nothing new and gives the same results.
    again = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert again.exit_code == 0, again.output
    assert [json.loads(line) for line in (out / "applied-plan" / "results.jsonl").read_text().splitlines()] == results


def test_eval_plan_needs_the_plan_verifier(tmp_path):
    from typer.testing import CliRunner

    from infertune.cli import app

    result = CliRunner().invoke(app, ["eval", "--task", "arith", "--model", "tiny", "--limit", "2", "--out",
                                      str(tmp_path / "r"), "--plan", str(_policy(tmp_path, verifier="orm")),
                                      "--verifier", "agreement"], env={"COLUMNS": "160"})
    assert result.exit_code != 0
    assert "verifier 'orm'" in result.output and "--verifier" in result.output


def test_an_empty_probe_is_hardest_and_a_nan_score_is_refused_by_name():
    """A probe scored −inf (an empty completion, by confidence) has difficulty +inf, the same at planning and when
    a plan is applied; bin edges stay within the values seen and it lands in the hardest bin; a NaN score stops the
    plan with the prompt, sample and verifier named."""
    from types import SimpleNamespace

    from infertune.planning.apply import _probe_hardness, _select
    from infertune.planning.difficulty import assign_bins, bin_edges, difficulty
    from infertune.store import scored_from_arrays

    scores = [[-0.2, -0.1], [-np.inf, -0.3], [-1.5, -np.inf], [-np.inf, -np.inf]]
    samples = scored_from_arrays(list("abcd"), np.zeros((4, 2)), np.full((4, 2), "x", dtype=object),
                                 scores={"conf": scores})
    planned = difficulty({0.6: samples}, "predicted", "conf", probe=(0.6, 1))
    plan = SimpleNamespace(probe_samples=1, verifier="conf")
    applied = [_probe_hardness(plan, [{"scores": {"conf": row[0]}, "answer": "x", "prompt_id": pid,
                                       "sample_index": 0}]) for pid, row in zip("abcd", scores)]
    np.testing.assert_array_equal(planned, applied)
    assert np.isposinf(planned[[1, 3]]).all()
    edges = bin_edges(planned, 3)
    assert np.isfinite(edges).all() and edges.max() <= 2.5
    assert list(assign_bins(planned, edges)) == [0, 2, 2, 2]
    rows = [{"prompt_id": "p", "sample_index": i, "reward": float(i), "answer": str(i), "scores": {"orm": v}}
            for i, v in enumerate([0.2, -np.inf, 0.7])]
    assert _select("bon:orm", rows) == (2.0, 2)
    rows[2]["scores"]["orm"] = float("nan")
    with pytest.raises(ValueError, match="prompt 'p', sample 2: verifier 'orm' scored nan"):
        _select("bon:orm", rows)


def test_a_bin_no_training_prompt_fell_in_takes_its_nearest_bins_strategy():
    """Tied difficulties can put a quantile edge inside a gap no training prompt fills; a new prompt landing in that
    empty bin gets the strategy of the nearest bin that had prompts (the harder on a tie), not an arbitrary one."""
    from types import SimpleNamespace

    from infertune.planning.difficulty import assign_bins
    from infertune.planning.planner import _fit

    hardness = np.array([0.0] * 6 + [1.0] * 6)
    values = np.array([[1.0, 0.0, 0.5]] * 6 + [[0.0, 1.0, 0.5]] * 6)
    pb = SimpleNamespace(hardness=hardness, bins=4, values=values, total=np.ones_like(values), budget=1.0)
    chosen, edges = _fit(pb, np.arange(12))
    bins = list(assign_bins(hardness, edges))
    filled = sorted(set(bins))
    assert chosen[filled[0]] == 0 and chosen[filled[-1]] == 1
    for b in set(range(4)) - set(filled):
        nearest = min(filled, key=lambda f: (abs(f - b), -f))
        assert chosen[b] == chosen[nearest]


def test_plan_files_write_non_finite_numbers_as_strings():
    """JSON has no infinity; the hardest bin's difficulty range reaches +inf when a probe scored −inf."""
    from infertune.planning.workflow import _json_safe

    assert json.loads(json.dumps(_json_safe({"range": [0.5, np.inf], "x": np.float64(-np.inf), "n": np.int64(3),
                                             "ok": np.bool_(True)}), allow_nan=False)) == {
        "range": [0.5, "inf"], "x": "-inf", "n": 3, "ok": True}

