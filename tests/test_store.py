"""The sample store keeps every completed row exactly once, through crashes, resumes and compaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infertune.store import KEY_COLUMNS, SCHEMA, Sample, SampleStore, StoreError
from store_writer_script import expected_completion

SCRIPT = Path(__file__).with_name("store_writer_script.py")


def _rows(store: SampleStore) -> list[tuple]:
    t = store.read()
    return list(zip(*(t.column(c).to_pylist() for c in (*KEY_COLUMNS, "completion"))))


def test_sigkill_mid_write_then_resume_keeps_each_row_once(tmp_path):
    prompts, n = 12, 8
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), *sys.path])}
    before_kill: list[set] = []
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), str(prompts), str(n), "0.01"],
                                env=env, stdout=subprocess.PIPE)
        # Let it commit a few shards (and probably hold a partial buffer), then kill it without warning.
        deadline = time.monotonic() + 30
        target = 3 * (attempt + 1)
        while len(SampleStore(tmp_path).shards()) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the writer finished before it could be killed"
        before_kill.append(set(_rows(SampleStore(tmp_path))))
    # Each kill kept what was committed before it.
    assert before_kill[0] <= before_kill[1] <= before_kill[2]
    assert 0 < len(before_kill[-1]) < prompts * n

    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(prompts), str(n), "0"], env=env,
                          capture_output=True, text=True, check=True)
    assert "finished" in done.stdout
    store = SampleStore(tmp_path)
    raw = pa.concat_tables([pq.read_table(p) for p in store.shards()])
    keys = list(zip(*(raw.column(c).to_pylist() for c in KEY_COLUMNS)))
    assert len(keys) == len(set(keys)) == prompts * n, "a row was lost or written twice"
    for task, prompt_id, temperature, index, completion in _rows(store):
        assert completion == expected_completion(int(prompt_id[1:]), index)
    assert before_kill[-1] <= set(_rows(store))
    assert not list(store.shard_dir.glob(".tmp-*"))


def test_resumed_writer_skips_existing_keys(tmp_path):
    store = SampleStore(tmp_path)
    with store.writer() as w:
        assert w.write(Sample(task="t", prompt_id="a", sample_index=0, temperature=1.0, reward=1.0))
    with store.writer() as w:
        assert not w.write(Sample(task="t", prompt_id="a", sample_index=0, temperature=1.0, reward=0.0))
        assert w.write(Sample(task="t", prompt_id="a", sample_index=1, temperature=1.0, reward=0.0))
    assert store.read().num_rows == 2


def test_compaction_is_idempotent_and_reader_drops_duplicates(tmp_path):
    store = SampleStore(tmp_path)
    with store.writer(flush_rows=2) as w:
        for i in range(7):
            w.write(Sample(task="t", prompt_id=f"p{i % 2}", sample_index=i, temperature=1.0, reward=1.0))
    before = sorted(_rows(store))
    # Simulate a crash after the merged shard was written but before the old ones were deleted.
    merged = store.read()
    pq.write_table(merged, store.shard_dir / "part-99999999999999999999-dup.parquet")
    assert sorted(_rows(store)) == before
    store.compact()
    assert len(store.shards()) == 1
    assert sorted(_rows(store)) == before


def test_missing_column_names_file_and_column(tmp_path):
    store = SampleStore(tmp_path)
    store.init()
    table = SCHEMA.empty_table().drop_columns(["reward"])
    bad = store.shard_dir / "part-0-bad.parquet"
    pq.write_table(table, bad)
    with pytest.raises(StoreError, match=rf"{bad}: missing column 'reward'"):
        store.read()


def test_wrongly_typed_column_names_file_and_column(tmp_path):
    store = SampleStore(tmp_path)
    with store.writer() as w:
        w.write(Sample(task="t", prompt_id="a", sample_index=0, temperature=1.0, reward=1.0, scores={"orm": 0.5}))
    table = store.read()
    bad = store.shard_dir / "part-1-bad.parquet"
    pq.write_table(table.set_column(table.column_names.index("reward"), "reward",
                                    pa.array(["yes"], pa.string())), bad)
    with pytest.raises(StoreError, match=rf"{bad}: column 'reward' has type string, expected double"):
        store.read()
    bad.unlink()
    pq.write_table(table.set_column(table.column_names.index("score_orm"), "score_orm",
                                    pa.array(["x"], pa.string())), bad)
    with pytest.raises(StoreError, match=rf"{bad}: column 'score_orm' has type string"):
        store.read()


def test_scored_arrays_use_first_n_samples_and_say_what_was_dropped(tmp_path):
    store = SampleStore(tmp_path)
    with store.writer() as w:
        for p, count in (("a", 5), ("b", 3)):
            for i in range(count):
                w.write(Sample(task="t", prompt_id=p, sample_index=10 - i, temperature=1.0, reward=float(i % 2),
                               answer=None if i == 1 else f"x{i}", scores={"v": float(i)}))
    s = store.scored()
    assert s.n == 3 and s.dropped == 2 and s.prompt_ids == ["a", "b"]
    # First n by sample index: for a, indices 6, 7, 8 (i = 4, 3, 2); for b, indices 8, 9, 10 (i = 2, 1, 0).
    np.testing.assert_array_equal(s.rewards, [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(s.scores["v"], [[4.0, 3.0, 2.0], [2.0, 1.0, 0.0]])
    assert s.answers.ids[1, 1] == -1 and s.answers.ids[1, 0] != s.answers.ids[1, 2]
    assert (s.answers.ids[0] >= 0).all() and len(set(s.answers.ids[0])) == 3


def test_unscored_rows_are_reported_not_guessed(tmp_path):
    store = SampleStore(tmp_path)
    with store.writer() as w:
        w.write(Sample(task="t", prompt_id="a", sample_index=0, temperature=1.0))
    with pytest.raises(StoreError, match="column 'reward' is empty for 1 rows"):
        store.scored()


def test_a_score_that_is_not_a_number_names_the_column_prompt_and_sample(tmp_path):
    """−inf is a score (an empty completion's confidence: never picked); NaN and +inf are not."""
    for bad in (float("nan"), float("inf")):
        store = SampleStore(tmp_path / str(bad))
        with store.writer() as w:
            for i, score in enumerate([0.5, -np.inf, bad]):
                w.write(Sample(task="t", prompt_id="a", sample_index=i, temperature=1.0, reward=1.0, answer="x",
                               scores={"conf": score, "orm": 0.1 * i}))
        with pytest.raises(StoreError, match=rf"column 'score_conf' holds {bad} for prompt 'a', sample 2"):
            store.scored()
    store = SampleStore(tmp_path / "ok")
    with store.writer() as w:
        for i, score in enumerate([0.5, -np.inf]):
            w.write(Sample(task="t", prompt_id="a", sample_index=i, temperature=1.0, reward=float(i), answer="x",
                           scores={"conf": score}))
    np.testing.assert_array_equal(store.scored().scores["conf"], [[0.5, -np.inf]])
