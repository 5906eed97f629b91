"""How hard a prompt is, as the planner bins it: from labels (oracle) or from m probe samples (predicted).

Predicted difficulty is what can be computed on a new, unlabelled prompt: 1 − the mean verifier score of its first m
probe samples. Planning and applying a plan call the same functions, so a prompt is binned the same way at both.
"""

from __future__ import annotations

import numpy as np


def difficulty(samples_by_temperature: dict, kind: str = "predicted", verifier: str | None = None, *,
               probe: tuple[float, int] | None = None) -> np.ndarray:
    """Per-prompt difficulty, higher = harder.

    "oracle": 1 − pass@1 from the rewards, pooled over temperatures. "predicted" needs no labels: with
    ``probe=(temperature, m)`` it is 1 − the mean verifier score of the prompt's first m samples at that temperature,
    exactly what ``infertune eval --policy`` can compute on a new prompt after drawing m probe samples; without a
    probe, 1 − the range-normalised mean score of all samples at every temperature (for analysis only).
    """
    if kind not in ("oracle", "predicted"):
        raise ValueError(f"difficulty must be oracle or predicted, got {kind!r}")
    if kind == "predicted" and probe is not None:
        temperature, m = probe
        if temperature not in samples_by_temperature:
            raise ValueError(f"no samples at probe temperature {temperature}; have {sorted(samples_by_temperature)}")
        s = samples_by_temperature[temperature]
        if not 1 <= m <= s.n:
            raise ValueError(f"probe samples must be in 1..{s.n} (the run's n), got {m}")
        name = verifier or default_verifier(s)
        if name not in s.scores:
            raise ValueError(f"no verifier {name!r} in the run; have {sorted(s.scores)}")
        return 1.0 - probe_scores(name, s.scores[name][:, :m], s.answers.ids[:, :m]).mean(axis=1)
    values = []
    for s in samples_by_temperature.values():
        if kind == "oracle":
            values.append(s.rewards.mean(axis=1))
        else:
            name = verifier or default_verifier(s)
            if name not in s.scores:
                raise ValueError(f"no verifier {name!r} in the run; have {sorted(s.scores)}")
            scores = s.scores[name]
            finite = scores[np.isfinite(scores)]
            lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
            values.append((np.clip(scores, lo, None).mean(axis=1) - lo) / (hi - lo) if hi > lo
                          else np.zeros(len(scores)))
    return 1.0 - np.mean(values, axis=0)


def probe_scores(verifier: str, scores: np.ndarray, answer_ids: np.ndarray) -> np.ndarray:
    """Verifier scores of a prompt's probe samples as they would be computed from the probes alone: majority
    agreement depends on which other samples exist, so it is recomputed among the probes (leave-one-out share of
    the same answer; unparsed answers score 0); other verifiers score each sample on its own."""
    if verifier != "agreement":
        return np.asarray(scores, dtype=np.float64)
    ids = np.asarray(answer_ids)
    m = ids.shape[1]
    if m == 1:
        return np.zeros(ids.shape)
    same = (ids[:, :, None] == ids[:, None, :]).sum(axis=2) - 1
    return np.where(ids >= 0, same / (m - 1), 0.0)


def default_verifier(samples) -> str:
    if not samples.scores:
        raise ValueError("predicted difficulty needs a verifier score column; run infertune score with a verifier")
    return sorted(samples.scores)[0]


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner quantile edges (bins − 1 of them). A probe whose score is −inf (an empty completion, by confidence) has
    difficulty +inf: it counts as the largest finite value here, so interpolation never meets inf − inf and no edge
    lies beyond the values seen; such prompts land in the hardest bin, at planning and when a plan is applied."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    top = finite.max() if finite.size else 0.0
    return np.quantile(np.where(np.isposinf(values), top, values), np.linspace(0, 1, bins + 1)[1:-1])


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right")
