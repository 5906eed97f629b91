"""Validation and encoding of estimator inputs.

Every estimator takes arrays of shape [prompts, n]. Checking them in one place means a caller who passes a ragged
list, a NaN reward or an impossible k gets the same clear ValueError from every estimator instead of a silent
wrong number somewhere downstream.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class EncodedAnswers(NamedTuple):
    """Answers as small per-prompt integer codes.

    ``ids[p, i]`` is the code of sample i's answer within prompt p (0 .. n_distinct[p]-1), or -1 when the answer
    could not be parsed. Codes are local to a prompt, so equal codes in different prompts mean nothing.
    """

    ids: np.ndarray
    n_distinct: np.ndarray


def as_matrix(name: str, values: Any, *, dtype: type = np.float64, allow_nan: bool = False,
              allow_minus_inf: bool = False) -> np.ndarray:
    """Coerce one per-sample input to a 2-D float array [prompts, n]; a 1-D input is one prompt.

    ``allow_minus_inf``: verifier scores may be −inf, the score of a sample that must never be picked over one with a
    finite score (the confidence verifier gives it to an empty completion); ranking handles it exactly."""
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric array of shape [prompts, n] ({exc})") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape [prompts, n], got an array with {arr.ndim} dimensions")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: empty input of shape {arr.shape}; need at least one prompt and one sample")
    if not allow_nan and np.issubdtype(arr.dtype, np.floating):
        bad = np.argwhere(~(np.isfinite(arr) | (allow_minus_inf & np.isneginf(arr))))
        if bad.size:
            p, i = bad[0]
            raise ValueError(f"{name}: non-finite value {arr[p, i]} at prompt {p}, sample {i}")
    return arr


def check_same_shape(**arrays: np.ndarray) -> tuple[int, int]:
    """All inputs describe the same samples, so their shapes must agree."""
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        desc = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"mismatched shapes: {desc}")
    return next(iter(shapes.values()))


def check_k(k: int, n: int) -> int:
    """k must be a whole number of samples in 1..n."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1 or k > n:
        raise ValueError(f"k={k} is outside 1..n with n={n} samples per prompt")
    return int(k)


def encode_answers(answers: Any) -> EncodedAnswers:
    """Map each prompt's answers to codes 0..A-1 (first-seen order) and unparseable answers (None) to -1.

    Accepts an ``EncodedAnswers`` unchanged, an integer array (every entry a valid label), or any array of hashable
    objects with None for unparseable answers.
    """
    if isinstance(answers, EncodedAnswers):
        return answers
    arr = np.asarray(answers)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"answers: expected shape [prompts, n], got an array with {arr.ndim} dimensions")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"answers: empty input of shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        return encode_labels(arr.astype(np.int64), np.ones(arr.shape, dtype=bool))
    if np.issubdtype(arr.dtype, np.floating):
        valid = ~np.isnan(arr)
        return encode_labels(np.where(valid, arr, 0.0), valid)
    codes = _arrow_codes(arr)
    if codes is not None:
        return encode_labels(codes, codes >= 0, dense=True)
    # Mixed or unusual objects: one pass with a dict gives global codes, then they are made local per prompt.
    flat = arr.ravel()
    table: dict[Any, int] = {}
    codes = np.empty(flat.shape[0], dtype=np.int64)
    for j, a in enumerate(flat):
        if a is None:
            codes[j] = -1
        else:
            try:
                codes[j] = table.setdefault(a, len(table))
            except TypeError as exc:
                p, i = divmod(j, arr.shape[1])
                raise ValueError(f"answers: unhashable answer {a!r} at prompt {p}, sample {i}") from exc
    codes = codes.reshape(arr.shape)
    return encode_labels(codes, codes >= 0, dense=True)


def _arrow_codes(arr: np.ndarray) -> np.ndarray | None:
    """Global integer codes through Arrow's dictionary encoding, or None when Arrow cannot type the answers."""
    import pyarrow as pa

    try:
        encoded = pa.array(arr.ravel(), from_pandas=False).dictionary_encode()
    except (pa.ArrowException, TypeError, ValueError):
        return None
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes.reshape(arr.shape)


def encode_labels(labels: np.ndarray, valid: np.ndarray, dense: bool = False) -> EncodedAnswers:
    """Encode integer labels [prompts, n] with a validity mask: codes dense within each prompt, -1 where invalid.

    ``dense`` says the valid labels are already codes 0..G-1 shared by all prompts.
    """
    n_prompts, n = labels.shape
    ids = np.full(labels.shape, -1, dtype=np.int64)
    n_distinct = np.zeros(n_prompts, dtype=np.int64)
    if not valid.any():
        return EncodedAnswers(ids=ids, n_distinct=n_distinct)
    if dense:
        span = int(labels[valid].max()) + 1
        if n_prompts * span <= 20_000_000:
            # Small alphabets: mark which codes each prompt uses; a running count along the row is the local code.
            present = np.zeros((n_prompts, span), dtype=bool)
            rows = np.broadcast_to(np.arange(n_prompts)[:, None], labels.shape)
            present[rows[valid], labels[valid]] = True
            local = np.cumsum(present, axis=1, dtype=np.int64) - 1
            ids[valid] = local[rows[valid], labels[valid]]
            return EncodedAnswers(ids=ids, n_distinct=present.sum(axis=1).astype(np.int64))
        codes = labels[valid]
    else:
        _, codes = np.unique(labels[valid], return_inverse=True)
        codes = codes.ravel()
        span = int(codes.max()) + 1
    # Large alphabets: the dense rank of (row, code) minus the rank of the row's first pair is the local code.
    rows = np.broadcast_to(np.arange(n_prompts)[:, None], labels.shape)[valid]
    uniq, inverse = np.unique(rows * span + codes, return_inverse=True)
    uniq_rows = uniq // span
    first = np.searchsorted(uniq_rows, np.arange(n_prompts), side="left")
    ids[valid] = inverse.ravel() - first[rows]
    n_distinct = np.bincount(uniq_rows, minlength=n_prompts).astype(np.int64)
    return EncodedAnswers(ids=ids, n_distinct=n_distinct)


def answer_values(encoded: EncodedAnswers, rewards: np.ndarray) -> np.ndarray:
    """Reward of each distinct answer: the mean reward of the samples that gave it, shape [prompts, max A].

    When a vote picks an answer, the user is judged on that answer; samples with equal answers normally have equal
    rewards, and where they do not (a reward that looks beyond the extracted answer) their mean is the expected
    reward of returning one of them at random.
    """
    ids = encoded.ids
    n_prompts, _ = ids.shape
    width = max(int(encoded.n_distinct.max(initial=0)), 1)
    valid = ids >= 0
    flat = (np.arange(n_prompts)[:, None] * width + ids)[valid]
    sums = np.bincount(flat, weights=rewards[valid], minlength=n_prompts * width)
    counts = np.bincount(flat, minlength=n_prompts * width)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return values.reshape(n_prompts, width)
