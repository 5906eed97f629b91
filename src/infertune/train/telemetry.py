"""What a training step's own samples say about the run: is there gradient, is the policy still exploring, does
the verifier pick well. Pure functions of one step's per-prompt rows (prompts may have different numbers of samples).

- ``nonzero_prompts`` / ``nonzero_samples``: the share of sampled prompts whose weights are not all zero, and the
  share of the step's samples that belong to them (the part of the sample budget that moved the policy).
- ``reward``, ``pass_at_k``, ``bon_at_k``: each prompt's mean reward, unbiased pass@k and Best-of-k (training
  verifier) of its samples (the curves through the evaluation core), averaged over prompts, each prompt once (a
  prompt given more samples by the allocation does not count more; these are figures of the prompts chosen).
- ``distinct_correct``: distinct extracted answers among a prompt's correct samples, averaged over prompts.
- ``selection_accuracy``: how often the verifier's pick among all of a prompt's samples is right when some sample
  is: Σ BoN@n_i / Σ pass@n_i over prompts (ties in the score averaged); 1 when the verifier is the reward.
- ``balance``: B-STaR's balance score (below).
- ``entropy`` (computed by the trainer: ``sequence_logprobs(..., entropy=True)``): the exact entropy of softmax(logits/T) at
  every sampled position, averaged over the sampled tokens: the entropy of the distribution actually sampled.

B-STaR's balance score (Zeng et al. 2024, "B-STaR: Monitoring and Balancing Exploration and Exploitation in
Self-Taught Reasoners", arXiv 2412.17256; the form of its released ``determine_hyper.py``): the samples whose
reward-model score passes a threshold τ are selected, duplicates (same text) dropped; with n_i selected and n'_i of
them correct, query i scores min(n'_i / n*, 1) · n'_i / n_i. The first factor rewards exploration (enough distinct
correct samples, n* of them), the second exploitation (the selection is mostly correct). The score of a
configuration is the mean over queries at the threshold that maximises it. Here the "reward model" is the training
verifier (the reward itself by default, where every selected sample is correct and only exploration counts); τ runs
over every distinct score (the selection only changes there), and a prompt with nothing selected scores 0 (B-STaR's
released code adds each query's reference solution to its pool, so its queries are rarely empty). B-STaR also caps the samples kept
per query to reach a target data size; the trainer keeps no such cap.
"""

from __future__ import annotations

import numpy as np

from infertune.evaluation import per_prompt_curves
from infertune.store import scored_from_arrays

TELEMETRY_FIELDS = ["temperature", "prompts", "samples", "nonzero_prompts", "nonzero_samples", "reward", "pass_at_k",
                    "bon_at_k", "distinct_correct", "selection_accuracy", "balance", "entropy"]


def nonzero_gradient(weight_rows) -> np.ndarray:
    """Per prompt: whether any of its samples has a non-zero weight."""
    return np.array([bool(np.any(np.asarray(w) != 0)) for w in weight_rows], dtype=bool)


def distinct_correct(rewards_rows, answers_rows) -> np.ndarray:
    """Per prompt: distinct answers among its correct samples (reward 1)."""
    return np.array([len({a for a, r in zip(answers, rewards) if r >= 1 and a is not None})
                     for rewards, answers in zip(rewards_rows, answers_rows)], dtype=np.float64)


def balance_score(rewards_rows, scores_rows, texts_rows, target: float) -> tuple[float, float]:
    """(B-STaR's balance score at the best threshold, that threshold) over prompts (module docstring).

    Vectorised over thresholds: the distinct texts of every prompt are laid out flat with their score (the highest
    score any copy got) and correctness, and each candidate threshold's selection is a row of a boolean matrix.
    """
    if target <= 0:
        raise ValueError(f"the balance score's n* must be > 0, got {target}")
    prompt, score, correct = [], [], []
    for i, (rewards, scores, texts) in enumerate(zip(rewards_rows, scores_rows, texts_rows)):
        unique: dict[str, list[float]] = {}
        for r, s, t in zip(rewards, scores, texts):
            seen = unique.setdefault(t, [float(s), float(r)])
            seen[0], seen[1] = max(seen[0], float(s)), max(seen[1], float(r))
        for s, r in unique.values():
            prompt.append(i)
            score.append(s)
            correct.append(r >= 1)
    m = len(rewards_rows)
    if m == 0 or not prompt:
        return float("nan"), float("nan")
    prompt_a, score_a, correct_a = np.array(prompt), np.array(score), np.array(correct)
    thresholds = np.unique(score_a)
    selected = score_a[None, :] >= thresholds[:, None]  # [thresholds, distinct samples]
    flat = prompt_a[None, :] + m * np.arange(thresholds.size)[:, None]
    size = np.bincount(flat[selected], minlength=m * thresholds.size).reshape(-1, m)
    good = np.bincount(flat[selected & correct_a[None, :]], minlength=m * thresholds.size).reshape(-1, m)
    ratio = np.divide(good, size, out=np.zeros(size.shape), where=size > 0)
    per_threshold = (np.minimum(good / target, 1.0) * ratio).mean(axis=1)
    best = int(np.argmax(per_threshold))
    return float(per_threshold[best]), float(thresholds[best])


def sample_curves(rewards_rows, scores_rows, k: int) -> dict[str, np.ndarray]:
    """Per prompt: pass@k, BoN@k (training verifier), pass@n_i and BoN@n_i of its own samples, through the
    evaluation core (prompts grouped by their number of samples, which must be at least k)."""
    m = len(rewards_rows)
    out = {name: np.full(m, np.nan) for name in ("pass_at_k", "bon_at_k", "pass_at_n", "bon_at_n")}
    sizes = np.array([len(r) for r in rewards_rows])
    for n in np.unique(sizes):
        rows = np.flatnonzero(sizes == n)
        if n < k:
            raise ValueError(f"{rows.size} prompts have {n} samples, fewer than k = {k}")
        rewards = np.array([rewards_rows[i] for i in rows], dtype=np.float64)
        scores = np.array([scores_rows[i] for i in rows], dtype=np.float64)
        answers = np.full(rewards.shape, None, dtype=object)
        samples = scored_from_arrays([str(i) for i in rows], rewards, answers, {"train": scores})
        curves = per_prompt_curves(samples, rules=["pass", "bon:train"])
        out["pass_at_k"][rows] = curves["pass"].values[:, k - 1]
        out["bon_at_k"][rows] = curves["bon:train"].values[:, k - 1]
        out["pass_at_n"][rows] = curves["pass"].values[:, n - 1]
        out["bon_at_n"][rows] = curves["bon:train"].values[:, n - 1]
    return out


def step_telemetry(rewards_rows, scores_rows, answers_rows, texts_rows, weight_rows, *, k: int,
                   balance_target: float) -> dict:
    """Every telemetry figure of one step except the entropy and temperature (which the trainer measures)."""
    sizes = np.array([len(r) for r in rewards_rows], dtype=np.float64)
    nonzero = nonzero_gradient(weight_rows)
    curves = sample_curves(rewards_rows, scores_rows, k)
    reachable = curves["pass_at_n"].sum()
    balance, _ = balance_score(rewards_rows, scores_rows, texts_rows, balance_target)
    return {
        "prompts": len(rewards_rows), "samples": int(sizes.sum()),
        "nonzero_prompts": float(nonzero.mean()), "nonzero_samples": float(sizes[nonzero].sum() / sizes.sum()),
        "reward": float(np.mean([np.mean(r) for r in rewards_rows])),
        "pass_at_k": float(curves["pass_at_k"].mean()), "bon_at_k": float(curves["bon_at_k"].mean()),
        "distinct_correct": float(distinct_correct(rewards_rows, answers_rows).mean()),
        "selection_accuracy": float(curves["bon_at_n"].sum() / reachable) if reachable > 0 else float("nan"),
        "balance": balance,
    }


def empty_telemetry() -> dict:
    """The telemetry of a step that sampled nothing (plain SFT): not a number for every figure."""
    return {name: float("nan") for name in TELEMETRY_FIELDS}


def progress_line(row: dict, k: int) -> str:
    """One line for a progress display: what to watch while a run trains."""
    return (f"reward {row['reward']:.3f} pass@{k} {row['pass_at_k']:.3f} nonzero {row['nonzero_prompts']:.2f} "
            f"distinct {row['distinct_correct']:.2f} H {row['entropy']:.3f} select {row['selection_accuracy']:.2f} "
            f"balance {row['balance']:.3f} "
            f"T {row['temperature']:.2f} loss {row['loss']:.4f}")
