"""Counter-based randomness: every (seed, prompt, sample index, step) gets its own uniform number.

A stateful generator shared by a batch makes sample i depend on what else is in the batch and on the order of
work; hashing the coordinates instead makes each sample a pure function of its own coordinates, so a resumed or
re-batched run draws exactly the samples it would have drawn, and n can be extended later without changing the
first n samples.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised over uint64 arrays (wrapping arithmetic is intended)."""
    with np.errstate(over="ignore"):
        z = (x + _GOLDEN).astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def text_key(text: str) -> int:
    """A stable 64-bit key for a prompt (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def sample_keys(seed: int, prompt_keys: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """One 64-bit key per sample from the seed, the prompt's key and the sample's index."""
    with np.errstate(over="ignore"):
        k = splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ prompt_keys.astype(np.uint64))
        return splitmix64(k ^ splitmix64(indices.astype(np.uint64)))


def uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """A uniform number in (0, 1) per key for this decoding step."""
    with np.errstate(over="ignore"):
        bits = splitmix64(keys ^ splitmix64(np.uint64(step) * _M1))
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
