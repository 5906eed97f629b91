"""Time to compute all four inference-scaling curves for every k <= n on many prompts.

Prints a JSON object as its last line. ``seconds``: pass@k, BoN@k, maj@k and weighted maj@k for every k on 10,000
prompts x n=256, from answers already dictionary-encoded (as the sample store hands them over through Arrow);
``seconds_from_python_objects`` adds encoding the answers from a numpy object array. A second run at n=1024 checks
memory and time at large n.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from infertune.estimators import bon_curve, encode_answers, maj_curve, pass_curve, weighted_maj_curve


def scored_samples(prompts: int, n: int, seed: int = 0):
    """Math-like samples: a correct answer, a long tail of wrong ones, some unparseable, a noisy verifier."""
    rng = np.random.default_rng(seed)
    p_correct = rng.beta(0.7, 1.2, size=(prompts, 1))
    correct = rng.random((prompts, n)) < p_correct
    wrong = 1 + np.minimum(rng.zipf(1.6, size=(prompts, n)), 40)
    labels = np.where(correct, 0, wrong)
    parsed = rng.random((prompts, n)) > 0.05
    rewards = correct.astype(np.float64)
    scores = 1.0 / (1.0 + np.exp(-(1.5 * correct - 0.75 + rng.normal(size=(prompts, n)))))
    labels = np.where(parsed, labels, -1)
    rewards = np.where(parsed, rewards, 0.0)
    answers = np.where(parsed, labels.astype(object), None)
    return answers, labels, scores, rewards


def time_curves(answers, scores, rewards) -> dict:
    timings = {}
    t = time.perf_counter()
    encoded = encode_answers(answers)
    timings["encode_answers"] = time.perf_counter() - t
    t0 = t = time.perf_counter()
    pass_curve(rewards)
    timings["pass"] = time.perf_counter() - t
    t = time.perf_counter()
    bon_curve(scores, rewards)
    timings["bon"] = time.perf_counter() - t
    t = time.perf_counter()
    maj = maj_curve(encoded, rewards)
    timings["maj"] = time.perf_counter() - t
    t = time.perf_counter()
    wmaj = weighted_maj_curve(encoded, scores, rewards)
    timings["weighted_maj"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    timings["maj_exact_fraction"] = float(maj.exact.mean())
    timings["maj_mean_stderr_max"] = float(maj.mean_stderr().max())
    timings["weighted_maj_mean_stderr_max"] = float(wmaj.mean_stderr().max())
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--large-n", type=int, default=1024)
    parser.add_argument("--large-prompts", type=int, default=10_000)
    args = parser.parse_args()

    warm = scored_samples(50, 16)
    time_curves(warm[0], warm[2], warm[3])  # first-call costs (imports, caches) are not what is measured
    answers, labels, scores, rewards = scored_samples(args.prompts, args.n)
    main_run = time_curves(answers, scores, rewards)
    print(f"n={args.n}, {args.prompts} prompts: {main_run}")
    answers, labels, scores, rewards = scored_samples(args.large_prompts, args.large_n, seed=1)
    large = time_curves(answers, scores, rewards)
    print(f"n={args.large_n}, {args.large_prompts} prompts: {large}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "seconds": round(main_run["total"], 3),
        "seconds_from_python_objects": round(main_run["total"] + main_run["encode_answers"], 3),
        "target_seconds": 2.0,
        "prompts": args.prompts,
        "n": args.n,
        "breakdown_s": {k: round(v, 3) for k, v in main_run.items() if k not in ("total",)},
        "large_n": args.large_n,
        "large_n_prompts": args.large_prompts,
        "large_n_seconds": round(large["total"], 3),
        "peak_rss_mib": round(peak_mib, 1),
    }))


if __name__ == "__main__":
    main()
