"""Best-of-N with a verifier stop rule: draw samples one at a time, stop at the first whose verifier score reaches a
threshold τ, or after N; answer with the best-scored sample drawn.

Uniform Best-of-N spends N samples on every prompt, including those whose first sample the verifier already trusts.
The stop rule spends them where no trusted answer has appeared yet, which is the per-prompt difficulty signal that
costs nothing extra to compute: it is the verifier's score of samples the strategy draws anyway (the adaptive
sampling of "Let's Sample Step by Step", Aggarwal et al. 2023, with a verifier in place of agreement).

Valued exactly from a prompt's n stored i.i.d. samples. The strategy's outcome is a function of its first N draws,
so its expectation over all orderings of the pool (every ordered N-tuple of distinct samples equally likely) is an
unbiased estimate of its expectation under i.i.d. draws, as the subset estimators of Best-of-N are. With A the
samples scoring ≥ τ (a of them) and B the rest (b = n − a):

- the first A sample drawn ends the draw and is the answer (every sample drawn before it is in B, so scores less),
  so given that an A sample comes within N draws the reward is the mean over A; this is Best-of-N on the pool with
  every A sample's score raised to one common top value and its reward replaced by A's mean, which the tie rule of
  ``bon_curve`` does;
- no A sample among the first N has probability q_N = C(b, N) / C(n, N), and then the answer is Best-of-N among N
  B samples: the same expression covers it;
- the expected draws are Σ_{j<N} q_j, and the expected tokens are those of the expected B draws at B's mean tokens
  plus (1 − q_N) times A's mean tokens.
"""

from __future__ import annotations

import numpy as np

from infertune.estimators.inputs import as_matrix, check_same_shape
from infertune.estimators.ranked import bon_curve


def stop_curves(scores, rewards, tokens, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, expected draws and expected tokens of the stop rule at ``threshold`` for every cap N = 1..n.

    ``scores``, ``rewards``, ``tokens``: [prompts, n]. Returns three [prompts, n] arrays; column N − 1 is cap N."""
    s = as_matrix("scores", scores, allow_minus_inf=True)
    r = as_matrix("rewards", rewards)
    t = as_matrix("tokens", tokens)
    check_same_shape(scores=s, rewards=r, tokens=t)
    n = s.shape[1]
    trusted = s >= threshold
    a = trusted.sum(axis=1)
    b = n - a
    top = np.max(s, axis=1, keepdims=True) + 1.0
    values = bon_curve(np.where(trusted, top, s), r)
    # q[:, j] = P(no trusted sample among the first j draws) = prod_{i<j} (b - i)/(n - i), for j = 0..n.
    j = np.arange(n)
    factors = np.clip(b[:, None] - j, 0, None) / (n - j)
    q = np.concatenate([np.ones((len(s), 1)), np.cumprod(factors, axis=1)], axis=1)
    draws = np.cumsum(q[:, :-1], axis=1)
    stopped = 1.0 - q[:, 1:]
    mean_a = np.where(a > 0, (t * trusted).sum(axis=1) / np.maximum(a, 1), 0.0)
    mean_b = np.where(b > 0, (t * ~trusted).sum(axis=1) / np.maximum(b, 1), 0.0)
    spent = (draws - stopped) * mean_b[:, None] + stopped * mean_a[:, None]
    return values, draws, spent
