"""The report: the numbers it writes are the estimators' numbers, and the CLI maps onto the config one to one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from infertune.cli import app
from infertune.estimators import bon_curve, maj_curve, pass_curve
from infertune.report import ReportConfig, build_report, write_report
from infertune.store import SampleStore
from infertune.synthetic import SyntheticConfig, write_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    write_run(SampleStore(path), SyntheticConfig(prompts=40, n=16, temperatures=[0.5, 1.0], seed=3))
    return path


def test_report_rows_are_the_estimators_numbers(run_dir):
    report = build_report(run_dir, ReportConfig(bootstrap=200))
    assert [(s.task, s.temperature) for s in report.sections] == [("synthetic-math", 0.5), ("synthetic-math", 1.0)]
    samples = SampleStore(run_dir).scored(temperature=1.0)
    rows = [r for r in report.rows() if r["temperature"] == 1.0]
    by = {(r["metric"], r["verifier"], r["k"]): r for r in rows}
    np.testing.assert_allclose([by[("pass", None, k)]["mean"] for k in range(1, 17)],
                               pass_curve(samples.rewards).mean(axis=0), atol=1e-12)
    np.testing.assert_allclose([by[("bon", "orm", k)]["mean"] for k in range(1, 17)],
                               bon_curve(samples.scores["orm"], samples.rewards).mean(axis=0), atol=1e-12)
    exact = maj_curve(samples.answers, samples.rewards, method="exact").values.mean(axis=0)
    np.testing.assert_allclose([by[("maj", None, k)]["mean"] for k in range(1, 17)], exact, atol=1e-9)
    for r in rows:
        assert r["ci_low"] - 1e-12 <= r["mean"] <= r["ci_high"] + 1e-12
    # pass@k is the best any selector can do.
    for k in range(1, 17):
        assert by[("pass", None, k)]["mean"] >= by[("bon", "orm", k)]["mean"] - 1e-12


def test_report_files_are_written_next_to_the_run(run_dir):
    written = write_report(build_report(run_dir, ReportConfig(bootstrap=50)))
    payload = json.loads(written["json"].read_text())
    assert payload["sections"][0]["n"] == 16 and len(payload["rows"]) > 0
    assert written["json"].parent == run_dir / "report"
    table = written["markdown"].read_text()
    assert "| pass |" in table and "k=16" in table
    png = written["plot:synthetic-math"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_report_and_its_options_map_onto_the_config(run_dir, tmp_path):
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", str(run_dir), "--bootstrap", "30", "--out", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (out / "report.json").exists() and not list(out.glob("*.png"))
    assert json.loads((out / "report.json").read_text())["config"]["bootstrap"] == 30
    help_text = runner.invoke(app, ["report", "--help"], env={"COLUMNS": "200"}).output
    for f in dataclasses.fields(ReportConfig):
        assert "--" + f.name.replace("_", "-") in help_text


def test_cli_reports_a_bad_run_clearly(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no sample store here" in result.output
    bad = runner.invoke(app, ["report", str(tmp_path), "--confidence", "1.5"])
    assert bad.exit_code != 0 and "confidence" in bad.output


def test_synthetic_then_report_runs_end_to_end(tmp_path):
    run = tmp_path / "synthetic-run"
    result = runner.invoke(app, ["synthetic", str(run), "--prompts", "30", "--n", "8",
                                 "--temperatures", "0.7", "--temperatures", "1.0"])
    assert result.exit_code == 0, result.output
    report = runner.invoke(app, ["report", str(run), "--bootstrap", "50"])
    assert report.exit_code == 0 and "pass@8" in report.output
    assert (run / "report" / "report.json").exists()
    # Writing it again resumes the same store: nothing is added twice.
    again = runner.invoke(app, ["synthetic", str(run), "--prompts", "30", "--n", "8",
                                "--temperatures", "0.7", "--temperatures", "1.0"])
    assert again.exit_code == 0 and "0 rows added" in again.output
    assert SampleStore(run).read().num_rows == 30 * 8 * 2
