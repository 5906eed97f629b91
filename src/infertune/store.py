"""The sample store: one Parquet row per sampled response, written in append-only shards as samples arrive.

Sampling is the expensive part of every experiment, so nothing already sampled may be lost or counted twice. A shard
is written to a hidden temporary file and renamed into place, so a reader sees whole shards or nothing, whatever
moment the writer is killed at. Every row has a key (task, prompt id, temperature, sample index); a resumed writer
skips keys already stored and a reader keeps the newest copy of a key (shard names sort by creation time), so a crash
between writing a compacted or rescored shard and deleting the old ones neither duplicates nor loses rows.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infertune.estimators import EncodedAnswers
from infertune.estimators.inputs import encode_labels

SCORE_PREFIX = "score_"
KEY_COLUMNS = ("task", "prompt_id", "temperature", "sample_index")
SHARD_DIR = "samples"
META_FILE = "meta.json"

SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("sample_index", pa.int32(), nullable=False),
        pa.field("temperature", pa.float64(), nullable=False),
        pa.field("seed", pa.int64()),
        pa.field("prompt", pa.string()),
        pa.field("completion", pa.string()),
        pa.field("num_tokens", pa.int32()),
        pa.field("logprob_sum", pa.float64()),
        pa.field("answer", pa.string()),
        pa.field("reward", pa.float64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("latency_s", pa.float64()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


class StoreError(ValueError):
    """A store file that cannot be read as samples; the message names the file and the column."""


@dataclass
class Sample:
    """One sampled response with what is known about it; verifier scores go in ``scores`` by verifier name."""

    task: str
    prompt_id: str
    sample_index: int
    temperature: float
    completion: str = ""
    prompt: str = ""
    seed: int | None = None
    num_tokens: int | None = None
    logprob_sum: float | None = None
    answer: str | None = None
    reward: float | None = None
    status: str = "ok"
    error: str | None = None
    latency_s: float | None = None
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, float, int]:
        return (self.task, self.prompt_id, float(self.temperature), int(self.sample_index))


def score_column(verifier: str) -> str:
    """Column name of a verifier's scores."""
    if not verifier or not all(ch.isalnum() or ch in "-_." for ch in verifier):
        raise ValueError(f"verifier name {verifier!r} must be non-empty and use letters, digits, '-', '_' or '.'")
    return SCORE_PREFIX + verifier


class SampleStore:
    """A directory of Parquet shards holding the samples of one run, plus its metadata in meta.json."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.shard_dir = self.path / SHARD_DIR

    # -- metadata -------------------------------------------------------------------------------------------------
    def init(self, **meta: object) -> str:
        """Create the store if needed and return its run id; metadata given here is merged into meta.json."""
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        current = self.meta()
        current.setdefault("run_id", uuid.uuid4().hex[:12])
        current.update({k: v for k, v in meta.items() if k != "run_id"})
        _atomic_write_text(self.path / META_FILE, json.dumps(current, indent=2, sort_keys=True))
        return str(current["run_id"])

    def meta(self) -> dict:
        path = self.path / META_FILE
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}: not valid JSON ({exc})") from exc

    def exists(self) -> bool:
        return self.shard_dir.is_dir()

    # -- writing --------------------------------------------------------------------------------------------------
    def writer(self, *, flush_rows: int = 256, flush_seconds: float = 10.0) -> "StoreWriter":
        """A writer that resumes this store: keys already present are skipped."""
        run_id = self.init()
        return StoreWriter(self, run_id, flush_rows=flush_rows, flush_seconds=flush_seconds)

    def shards(self) -> list[Path]:
        if not self.shard_dir.is_dir():
            return []
        return sorted(p for p in self.shard_dir.glob("part-*.parquet"))

    # -- reading --------------------------------------------------------------------------------------------------
    def read(self, columns: Iterable[str] | None = None) -> pa.Table:
        """All rows, validated and with each key once (the newest shard's copy wins)."""
        tables = [read_shard(path) for path in self.shards()]
        if not tables:
            empty = SCHEMA.empty_table()
            return empty.select(list(columns)) if columns else empty
        table = pa.concat_tables(tables, promote_options="default")
        table = _newest_per_key(table)
        return table.select(list(columns)) if columns else table

    def keys(self) -> set[tuple[str, str, float, int]]:
        """Keys of every stored row."""
        keys: set = set()
        for path in self.shards():
            t = read_shard(path, columns=list(KEY_COLUMNS))
            keys.update(zip(*(t.column(c).to_pylist() for c in KEY_COLUMNS)))
        return keys

    def verifiers(self) -> list[str]:
        names: set[str] = set()
        for path in self.shards():
            names.update(n[len(SCORE_PREFIX):] for n in pq.read_schema(path).names if n.startswith(SCORE_PREFIX))
        return sorted(names)

    def compact(self) -> Path | None:
        """Merge all shards into one; safe to interrupt (duplicates left by a crash are dropped on read)."""
        old = self.shards()
        if len(old) <= 1:
            return old[0] if old else None
        return self.rewrite(self.read())

    def rewrite(self, table: pa.Table) -> Path:
        """Replace the store's rows by ``table`` (same keys, new or updated columns), safe to interrupt.

        The new shard is committed before the old ones are deleted; until they are, the reader prefers it.
        """
        missing = set(KEY_COLUMNS) - set(table.column_names)
        if missing:
            raise StoreError(f"{self.path}: rewrite needs the key columns, missing {sorted(missing)}")
        old = self.shards()
        new = _write_shard(self.shard_dir, table)
        for path in old:
            path.unlink(missing_ok=True)
        return new

    def scored(self, *, temperature: float | None = None, task: str | None = None) -> "ScoredSamples":
        """Rectangular arrays for the estimators: one row per prompt, n samples each (see ``ScoredSamples``)."""
        return ScoredSamples.from_table(self.read(), source=str(self.path), temperature=temperature, task=task)


class StoreWriter:
    """Buffers rows and flushes them as whole shards; use as a context manager so the last rows are flushed."""

    def __init__(self, store: SampleStore, run_id: str, *, flush_rows: int, flush_seconds: float) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_rows = max(1, int(flush_rows))
        self.flush_seconds = float(flush_seconds)
        self._buffer: list[Sample] = []
        self._last_flush = time.monotonic()
        for stale in store.shard_dir.glob(".tmp-*"):
            stale.unlink(missing_ok=True)  # a shard that never got renamed into place was never committed
        self.done = store.keys()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def has(self, key: tuple) -> bool:
        return key in self.done

    def write(self, sample: Sample) -> bool:
        """Queue one sample; False (and nothing written) when its key is already stored or queued."""
        key = sample.key
        if key in self.done:
            return False
        self.done.add(key)
        self._buffer.append(sample)
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        return True

    def write_many(self, samples: Iterable[Sample]) -> int:
        return sum(self.write(s) for s in samples)

    def flush(self) -> Path | None:
        """Write queued rows as one shard; returns its path (None when nothing was queued)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return None
        table = samples_to_table(self._buffer, self.run_id)
        path = _write_shard(self.store.shard_dir, table)
        self._buffer = []
        return path


def samples_to_table(samples: list[Sample], run_id: str) -> pa.Table:
    """Rows in the store's schema, with one float column per verifier that any of the samples has a score from."""
    now = datetime.now(timezone.utc)
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    verifiers = sorted({v for s in samples for v in s.scores})
    score_cols = {v: [] for v in verifiers}
    own = {"run_id": run_id, "created_at": now}
    for s in samples:  # attribute reads, not dataclasses.asdict: its deep copy took 4 s per 19,200 rows
        for name in SCHEMA.names:
            columns[name].append(own[name] if name in own else getattr(s, name, None))
        for v in verifiers:
            score_cols[v].append(s.scores.get(v))
    arrays = [pa.array(columns[f.name], type=f.type) for f in SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=SCHEMA)
    for v in verifiers:
        table = table.append_column(pa.field(score_column(v), pa.float64()), pa.array(score_cols[v], pa.float64()))
    return table


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one shard and check its columns against the schema; errors name the file and the column."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"{path}: not a readable Parquet file ({exc})") from exc
    wanted = columns or SCHEMA.names
    for name in wanted:
        if name not in schema.names:
            raise StoreError(f"{path}: missing column '{name}'")
        expected = SCHEMA.field(name).type if name in SCHEMA.names else pa.float64()
        got = schema.field(name).type
        if got != expected and not pa.types.is_null(got):
            raise StoreError(f"{path}: column '{name}' has type {got}, expected {expected}")
    for name in schema.names:
        if name.startswith(SCORE_PREFIX) and not (pa.types.is_floating(schema.field(name).type)
                                                 or pa.types.is_null(schema.field(name).type)):
            raise StoreError(f"{path}: column '{name}' has type {schema.field(name).type}, expected double")
    table = pq.read_table(path, columns=columns)
    if columns is None:
        # Columns written as all-null get the schema's type, so shards concatenate.
        for i, name in enumerate(table.column_names):
            expected = SCHEMA.field(name).type if name in SCHEMA.names else pa.float64()
            if table.schema.field(name).type != expected:
                table = table.set_column(i, pa.field(name, expected), table.column(name).cast(expected))
    return table


def _write_shard(directory: Path, table: pa.Table) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = directory / f".tmp-{name}"
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    final = directory / name
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _newest_per_key(table: pa.Table) -> pa.Table:
    """Each key once: shards are concatenated oldest first, so the last copy of a key is the newest."""
    if table.num_rows == 0:
        return table
    keys = table.select(list(KEY_COLUMNS)).append_column("_row", pa.array(np.arange(table.num_rows)))
    newest = keys.group_by(list(KEY_COLUMNS), use_threads=False).aggregate([("_row", "max")])
    rows = np.sort(newest.column("_row_max").to_numpy())
    return table if rows.size == table.num_rows else table.take(rows)


@dataclass
class ScoredSamples:
    """One task and temperature of a store as rectangular arrays [prompts, n] for the estimators.

    Prompts rarely all have the same number of samples after an interrupted run; every prompt then contributes its
    first n samples by sample index, n being the smallest count, which keeps the estimates unbiased because which
    samples are kept does not depend on their outcome.
    """

    prompt_ids: list[str]
    rewards: np.ndarray
    answers: EncodedAnswers
    scores: dict[str, np.ndarray]
    n: int
    dropped: int
    tokens: np.ndarray | None = None  # generated tokens of each sample, where every kept row records them

    @classmethod
    def from_table(cls, table: pa.Table, *, source: str, temperature: float | None = None,
                   task: str | None = None) -> "ScoredSamples":
        if table.num_rows == 0:
            raise StoreError(f"{source}: the store holds no samples")
        for column, wanted in (("task", task), ("temperature", temperature)):
            values = pc.unique(table.column(column)).to_pylist()
            if wanted is None:
                if len(values) > 1:
                    raise StoreError(f"{source}: several values of '{column}' ({values[:5]}); choose one")
            else:
                table = table.filter(pc.equal(table.column(column), wanted))
                if table.num_rows == 0:
                    raise StoreError(f"{source}: no samples with {column} = {wanted} (have {values[:10]})")
        rewards = table.column("reward")
        if rewards.null_count:
            first = table.filter(pc.is_null(rewards)).slice(0, 1).to_pylist()[0]
            raise StoreError(f"{source}: column 'reward' is empty for {rewards.null_count} rows (first: prompt "
                             f"{first['prompt_id']!r}, sample {first['sample_index']}); score the run first")
        table = table.sort_by([("prompt_id", "ascending"), ("sample_index", "ascending")])
        # After the sort, first-seen dictionary codes number the prompts in order and rows come grouped by prompt.
        codes = table.column("prompt_id").combine_chunks().dictionary_encode().indices.to_numpy()
        counts = np.bincount(codes)
        n = int(counts.min())
        rank = np.arange(codes.size) - (np.cumsum(counts) - counts)[codes]
        kept = table.take(pa.array(np.flatnonzero(rank < n)))
        n_prompts = counts.size
        reward = kept.column("reward").to_numpy().reshape(n_prompts, n)
        answer_codes = kept.column("answer").combine_chunks().dictionary_encode().indices
        valid = ~np.asarray(answer_codes.is_null().to_numpy(zero_copy_only=False))
        labels = answer_codes.fill_null(0).to_numpy().astype(np.int64).reshape(n_prompts, n)
        answers = encode_labels(labels, valid.reshape(n_prompts, n), dense=True)
        scores = {}
        for name in kept.column_names:
            if name.startswith(SCORE_PREFIX):
                col = kept.column(name)
                if col.null_count:
                    continue  # a verifier that did not score every sample cannot rank them all
                values = col.to_numpy()
                bad = np.flatnonzero(np.isnan(values) | np.isposinf(values))  # −inf: a sample never to be picked
                if bad.size:
                    row = kept.slice(int(bad[0]), 1).to_pylist()[0]
                    raise StoreError(f"{source}: column {name!r} holds {values[bad[0]]} for prompt "
                                     f"{row['prompt_id']!r}, sample {row['sample_index']} ({bad.size} such rows); "
                                     "a verifier's scores must be numbers or -inf")
                scores[name[len(SCORE_PREFIX):]] = values.reshape(n_prompts, n)
        ids = kept.column("prompt_id").to_pylist()[::n]
        counted = kept.column("num_tokens")
        tokens = None if counted.null_count else counted.to_numpy().astype(np.int64).reshape(n_prompts, n)
        return cls(prompt_ids=ids, rewards=reward, answers=answers, scores=scores, n=n,
                   dropped=int(table.num_rows - kept.num_rows), tokens=tokens)


def sample_columns(samples: ScoredSamples, start: int, stop: int | None = None) -> ScoredSamples:
    """The samples with index start .. stop − 1 of every prompt (e.g. all but the probes a plan draws first)."""
    from infertune.estimators import encode_answers

    stop = samples.n if stop is None else stop
    if not 0 <= start < stop <= samples.n:
        raise ValueError(f"sample columns {start}..{stop} do not fit n = {samples.n}")
    ids = samples.answers.ids[:, start:stop]
    answers = np.where(ids >= 0, ids, None).astype(object)
    return ScoredSamples(prompt_ids=list(samples.prompt_ids), rewards=samples.rewards[:, start:stop],
                         answers=encode_answers(answers), scores={k: v[:, start:stop] for k, v in samples.scores.items()},
                         n=stop - start, dropped=samples.dropped,
                         tokens=None if samples.tokens is None else samples.tokens[:, start:stop])


def scored_from_arrays(prompt_ids: list[str], rewards, answers, scores: dict | None = None,
                       tokens=None) -> ScoredSamples:
    """A ``ScoredSamples`` from in-memory arrays [prompts, n] (answers: str or None), for samples that never went
    through a store (a trainer's held-out check)."""
    from infertune.estimators import encode_answers

    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or len(prompt_ids) != r.shape[0]:
        raise ValueError(f"rewards: expected shape [{len(prompt_ids)} prompts, n], got {r.shape}")
    table = {name: np.asarray(v, dtype=np.float64).reshape(r.shape) for name, v in (scores or {}).items()}
    counted = None if tokens is None else np.asarray(tokens, dtype=np.int64).reshape(r.shape)
    return ScoredSamples(prompt_ids=list(prompt_ids), rewards=r, answers=encode_answers(answers), scores=table,
                         n=r.shape[1], dropped=0, tokens=counted)


def iter_tasks_and_temperatures(table: pa.Table) -> Iterator[tuple[str, float]]:
    """Every (task, temperature) present, sorted."""
    pairs = table.select(["task", "temperature"]).group_by(["task", "temperature"]).aggregate([])
    yield from sorted(zip(pairs.column("task").to_pylist(), pairs.column("temperature").to_pylist()))
