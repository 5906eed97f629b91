"""The main job at reduced size: the whole pipeline runs, writes what it promises, and resumes from its outputs."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from infertune.cli import app


def test_quick_demo_end_to_end_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERTUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    rows = results["summary"]
    assert rows and set(rows[0]) == {"model", "objective", "metric", "k", "mean", "ci_low", "ci_high", "seeds"}
    assert {r["metric"] for r in rows} == {"pass", "bon", "maj"} and {r["k"] for r in rows} == {1, 4, 16, 32}
    assert {r["objective"] for r in rows} == {"none", "rloo", "bon-exact"}
    for r in rows:
        assert r["ci_low"] - 1e-12 <= r["mean"] <= r["ci_high"] + 1e-12 and r["seeds"] >= 1
        if r["metric"] == "pass":  # pass@k grows with k
            later = [q for q in rows if q["model"] == r["model"] and q["metric"] == "pass" and q["k"] > r["k"]]
            assert all(q["mean"] >= r["mean"] - 1e-12 for q in later)
    assert {"base_model", "verifier", "fine_tune", "evaluate", "report"} <= set(results["stages_seconds"])
    assert results["per_seed"] and results["findings"] and "verifier" in results
    assert (out / "curves.png").stat().st_size > 10_000
    assert "held-out accuracy" in result.output and "stages:" in result.output
    # A second run reuses every stage it finds on disk.
    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    reused = json.loads((out / "results.json").read_text())
    assert "fine_tune" not in reused["stages_seconds"] and reused["reused_from_earlier_runs"]
    assert reused["summary"] == results["summary"]
