"""The whole path with search and revisions on tiny models: plan runs them into stores and values them; eval --plan
applies a plan whose bins search against the PRM and revise, and counts what they cost."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infertune.store import SampleStore


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import LlamaForSequenceClassification

    from infertune.models.tiny import TinyConfig, build_tiny, char_tokenizer, tiny_model
    from infertune.sampling import SampleConfig, sample_run
    from infertune.scoring import score_store
    from infertune.tasks import load
    from infertune.verify import build_verifier
    from infertune.verify.prm import ProcessRewardModel

    root = tmp_path_factory.mktemp("plan-search")
    tok = char_tokenizer()
    tok.padding_side = "right"
    prm = ProcessRewardModel(build_tiny(LlamaForSequenceClassification, TinyConfig(hidden_size=32, layers=1, heads=2,
                                                                                   intermediate_size=64, seed=2),
                                        tok, num_labels=1), tok, steps="operators")
    prm.save(root / "prm")
    reviser, rtok = tiny_model(TinyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, seed=9))
    reviser.save_pretrained(root / "reviser")
    rtok.save_pretrained(root / "reviser")
    run = root / "run"
    config = SampleConfig(task="arith", task_option=["size=40"], model="tiny", n=5, temperatures=[1.0],
                          max_new_tokens=8, out=str(run), limit=24)
    sample_run(config)
    task = load("arith", size=40)
    score_store(SampleStore(run), task, [build_verifier(f"prm={root / 'prm'}", task)])
    return root, run


def test_plan_runs_search_and_revisions_into_stores_and_values_them(setup):
    from infertune.planning import PlanConfig, plan_run, write_plan

    root, run = setup
    config = PlanConfig(budget=6, curve=[6], bins=2, folds=3, probe_samples=1, verifier="prm", prm=str(root / "prm"),
                        search_budgets=[2], width=2, lookahead=1, lookahead_budgets=[2], search_runs=2, max_steps=3,
                        max_step_tokens=4, revision_model=str(root / "reviser"), chains=2, attempts=2,
                        score_with=[f"prm={root / 'prm'}"], bootstrap=50)
    result = plan_run(SampleStore(run), config)
    described = result.strategies
    assert {"parallel", "beam", "lookahead", "revise"} <= set(described)
    folders = sorted(p.name for p in (run / "strategies").iterdir())
    assert [f.rsplit("-", 1)[0] for f in folders] == ["beam-k0-M2-wmaj-prm-N2-T1", "lookahead-k1-M2-wmaj-prm-N2-T1",
                                                      "revise-T1-w2"]
    pool = SampleStore(run).read()
    for name in folders:
        store = SampleStore(run / "strategies" / name)
        table = store.read()
        per_prompt = 4 if name.startswith("revise") else 2  # search: 2 runs; revisions: 2 chains x 2 attempts
        assert table.num_rows == 24 * per_prompt
        assert table.column("reward").null_count == 0 and table.column("num_tokens").null_count == 0
        assert set(table.column("seed").to_pylist()).isdisjoint(set(pool.column("seed").to_pylist()))
        assert store.meta()["kind"] in ("search", "revise") and store.meta()["identity"]["policy"] == "tiny"
    # Re-planning finds every run stored: nothing is sampled again.
    before = {name: SampleStore(run / "strategies" / name).shards() for name in folders}
    again = plan_run(SampleStore(run), config)
    assert {name: SampleStore(run / "strategies" / name).shards() for name in folders} == before
    assert again.result.adaptive_accuracy == result.result.adaptive_accuracy
    paths = write_plan(result, run / "plan")
    spec = json.loads(paths["plan"].read_text())
    assert spec["components"]["prm"] == str((root / "prm").resolve()) and spec["unit"] == "tokens"
    assert [row["budget"] for row in json.loads(paths["summary"].read_text())["curve"]] == [6]


def _plan_file(root, edges, strategies):
    from infertune.planning import PLAN_FORMAT

    path = root / "search-plan.json"
    path.write_text(json.dumps({
        "format": PLAN_FORMAT, "difficulty": "predicted", "verifier": "prm", "budget": 8, "unit": "tokens",
        "unit_size": 8.0, "probe": {"temperature": 1.0, "samples": 1}, "bin_edges": edges, "strategies": strategies,
        "task": "arith", "components": {"prm": str(root / "prm"), "revision_model": str(root / "reviser"),
                                        "window": 2, "max_steps": 2, "max_step_tokens": 4}}))
    return path


@pytest.mark.parametrize("method", ["beam", "revise"])
def test_eval_plan_applies_search_and_revision_bins(setup, tmp_path, method):
    """Every prompt goes to the one bin; its strategy runs into a store of its own, and each prompt's cost is the
    run's tokens plus its probe's."""
    from typer.testing import CliRunner

    from infertune.cli import app

    root, _ = setup
    strategy = ({"temperature": 1.0, "rule": "wmaj:prm", "n": 4, "method": "beam", "width": 2} if method == "beam"
                else {"temperature": 1.0, "rule": "bon:prm", "n": 4, "method": "revise", "chains": 2})
    out = tmp_path / "applied"
    args = ["eval", "--task", "arith", "--task-option", "size=40", "--model", "tiny", "--limit", "6",
            "--max-new-tokens", "6", "--out", str(out), "--plan", str(_plan_file(root, [], [strategy])),
            "--verifier", f"prm={root / 'prm'}"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "applied-plan" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["method"] for r in rows} == {method}
    probes = {r["prompt_id"]: r["num_tokens"] for r in SampleStore(out).read().to_pylist()}
    [folder] = list((out / "strategies").iterdir())
    runs = SampleStore(folder).read().to_pylist()
    for r in rows:
        spent = sum(x["num_tokens"] for x in runs if x["prompt_id"] == r["prompt_id"])
        assert r["tokens"] == spent + probes[r["prompt_id"]]
        assert r["cost"] == pytest.approx(r["tokens"] / 8.0)
    if method == "revise":  # chain c's second attempt read its first: the question, the attempt and '|'
        assert len(runs) == 6 * 4
        by_key = {(x["prompt_id"], x["sample_index"]): x for x in runs}
        from infertune.tasks import load

        problems = {p.id: p for p in load("arith", size=40).problems()}
        for (pid, index), x in by_key.items():
            if index % 2:
                first = by_key[(pid, index - 1)]
                assert x["prompt"] == problems[pid].prompt + first["completion"].strip().replace("\n", " ") + "|"
                assert problems[pid].reference not in x["prompt"][len(problems[pid].prompt):]
    summary = json.loads((out / "applied-plan" / "summary.json").read_text())
    assert summary["mean_tokens"] == pytest.approx(np.mean([r["tokens"] for r in rows]))


def test_a_strategy_store_refuses_runs_with_other_models(setup, tmp_path):
    from infertune.planning import Strategy
    from infertune.planning.runs import open_policy, run_search
    from infertune.store import StoreError
    from infertune.tasks import load
    from infertune.verify.prm import ProcessRewardModel

    root, _ = setup
    task = load("arith", size=40)
    prm = ProcessRewardModel.load(root / "prm")
    store = SampleStore(tmp_path / "beam")
    strategy = Strategy(1.0, "wmaj:prm", 2, "beam", width=2)
    problems = task.problems()[:2]
    run_search(store, task, problems, open_policy("tiny"), prm, strategy, runs=1, seed=0, max_steps=2,
               max_step_tokens=3, identity={"prm": "first"})
    with pytest.raises(StoreError, match="were made with"):
        run_search(store, task, problems, open_policy("tiny"), prm, strategy, runs=1, seed=0, max_steps=2,
                   max_step_tokens=3, identity={"prm": "second"})
