"""Scoring a run writes answers, rewards and one column per verifier into the store, and only once."""

import numpy as np
import pytest
from typer.testing import CliRunner

from infertune import tasks
from infertune.cli import app
from infertune.scoring import ScoreConfig, score_store, task_for_run
from infertune.tasks import parse_options
from infertune.verify import build_verifier
from infertune.store import Sample, SampleStore, StoreError


def _unscored_run(path, task):
    store = SampleStore(path)
    store.init(task_spec=task.spec())
    problems = task.problems()
    with store.writer() as w:
        for p in problems:
            for i, completion in enumerate([p.reference, "1+1", p.reference, "junk"]):
                w.write(Sample(task=task.name, prompt_id=p.id, sample_index=i, temperature=1.0,
                               completion=completion, prompt=p.prompt))
    return store


def test_score_store_fills_reward_answer_and_verifier_columns(tmp_path):
    task = tasks.load("arith", size=5, seed=2)
    store = _unscored_run(tmp_path, task)
    summary = score_store(store, task, [build_verifier("agreement", task), build_verifier("oracle", task)])
    assert summary["rows_scored"] == 20
    samples = store.scored()
    np.testing.assert_array_equal(samples.rewards, np.tile([1.0, 0.0, 1.0, 0.0], (5, 1)))
    np.testing.assert_array_equal(samples.scores["oracle"], samples.rewards)
    # The two identical correct answers agree with one other sample out of three.
    np.testing.assert_allclose(samples.scores["agreement"][:, 0], 1 / 3)
    assert samples.answers.ids[0, 3] == -1  # "junk" is not an expression
    assert score_store(store, task, [build_verifier("agreement", task)])["rows_scored"] == 0


def test_cli_score_uses_the_recorded_task(tmp_path):
    task = tasks.load("arith", size=3, seed=4)
    _unscored_run(tmp_path, task)
    result = CliRunner().invoke(app, ["score", str(tmp_path), "--verifier", "oracle"])
    assert result.exit_code == 0, result.output
    assert "scored 12 of 12 rows" in result.output
    report = CliRunner().invoke(app, ["report", str(tmp_path), "--bootstrap", "20", "--no-plots"])
    assert report.exit_code == 0 and "bon:oracle" in report.output


def test_unknown_prompt_and_bad_options_are_reported(tmp_path):
    task = tasks.load("arith", size=3, seed=4)
    store = _unscored_run(tmp_path, task)
    with pytest.raises(StoreError, match="which task arith does not have"):
        score_store(store, tasks.load("arith", size=3, seed=5), [])
    with pytest.raises(ValueError, match="not key=value"):
        parse_options(["size"])
    assert parse_options(["size=3", "ops=+-"]) == {"size": 3, "ops": "+-"}
    with pytest.raises(ValueError, match="needs a model path"):
        build_verifier("rm", task)
    assert task_for_run(store, ScoreConfig()).spec() == task.spec()


def test_extending_a_run_rescores_agreement_of_the_old_samples(tmp_path):
    """Agreement compares a prompt's samples: when new samples arrive, the old ones' scores must change too."""
    task = tasks.load("arith", size=4, seed=2)
    store = SampleStore(tmp_path / "grown")
    store.init(task_spec=task.spec())
    completions = lambda p: [p.reference, "1+1", p.reference, p.reference]  # noqa: E731
    for stage in (range(0, 2), range(2, 4)):
        with store.writer() as w:
            for p in task.problems():
                for i in stage:
                    w.write(Sample(task=task.name, prompt_id=p.id, sample_index=i, temperature=1.0,
                                   completion=completions(p)[i], prompt=p.prompt))
        score_store(store, task, [build_verifier("agreement", task)])
    once = SampleStore(tmp_path / "once")
    once.init(task_spec=task.spec())
    with once.writer() as w:
        for p in task.problems():
            for i, c in enumerate(completions(p)):
                w.write(Sample(task=task.name, prompt_id=p.id, sample_index=i, temperature=1.0, completion=c,
                               prompt=p.prompt))
    score_store(once, task, [build_verifier("agreement", task)])
    np.testing.assert_allclose(store.scored().scores["agreement"], once.scored().scores["agreement"])
    np.testing.assert_allclose(store.scored().scores["agreement"][:, 0], 2 / 3)
