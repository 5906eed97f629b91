"""infertune sample / eval: streamed into the store, resumable after a kill, each (prompt, index) exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from infertune.cli import app
from infertune.sampling import SampleConfig, sample_run
from infertune.store import KEY_COLUMNS, SampleStore, StoreError


def _raw_keys(path):
    store = SampleStore(path)
    table = pa.concat_tables([pq.read_table(p, columns=list(KEY_COLUMNS)) for p in store.shards()])
    return list(zip(*(table.column(c).to_pylist() for c in KEY_COLUMNS)))


def test_kill_mid_run_then_rerun_gives_each_sample_once(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "infertune.cli", "eval", "--task", "arith", "--task-option", "size=48",
            "--model", "tiny", "--n", "6", "--max-new-tokens", "12", "--batch-prompts", "2", "--out", str(out),
            "--bootstrap", "20", "--verifier", "agreement"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(SampleStore(out).shards()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    partial = _raw_keys(out)
    assert 0 < len(partial) < 48 * 6 and len(partial) == len(set(partial))
    partial_rows = {tuple(r[c] for c in KEY_COLUMNS): r for r in SampleStore(out).read().to_pylist()}

    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    keys = _raw_keys(out)
    assert len(keys) == len(set(keys)) == 48 * 6
    assert {(k[1], k[3]) for k in keys} == {(f"arith-0-{p:05d}", i) for p in range(48) for i in range(6)}
    # The samples that survived the kill are untouched, and their rewards were filled in afterwards.
    final = {tuple(r[c] for c in KEY_COLUMNS): r for r in SampleStore(out).read().to_pylist()}
    for key in partial:
        assert final[key]["completion"] == partial_rows[key]["completion"]
    assert all(r["reward"] is not None and r["score_agreement"] is not None for r in final.values())
    assert (out / "report" / "report.json").exists()


def test_raising_n_extends_a_run_without_changing_earlier_samples(tmp_path):
    base = dict(task="arith", task_option=["size=4"], model="tiny", max_new_tokens=8, out=str(tmp_path))
    sample_run(SampleConfig(n=3, **base))
    before = {(r["prompt_id"], r["sample_index"]): r["completion"] for r in SampleStore(tmp_path).read().to_pylist()}
    summary = sample_run(SampleConfig(n=5, **base))
    assert summary["rows_written"] == 4 * 2
    after = {(r["prompt_id"], r["sample_index"]): r["completion"] for r in SampleStore(tmp_path).read().to_pylist()}
    assert len(after) == 20 and all(after[k] == v for k, v in before.items())
    assert sample_run(SampleConfig(n=5, **base))["rows_written"] == 0


def test_a_run_folder_is_not_mixed_with_another_task(tmp_path):
    sample_run(SampleConfig(task="arith", task_option=["size=2"], n=1, max_new_tokens=4, out=str(tmp_path)))
    with pytest.raises(StoreError, match="use another --out"):
        sample_run(SampleConfig(task="arith", task_option=["size=3"], n=1, max_new_tokens=4, out=str(tmp_path)))


def test_sample_command_reports_bad_options(tmp_path):
    result = CliRunner().invoke(app, ["sample", "--task", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown task 'nope'" in result.output
    result = CliRunner().invoke(app, ["sample", "--chat", "maybe", "--out", str(tmp_path)])
    assert result.exit_code != 0
