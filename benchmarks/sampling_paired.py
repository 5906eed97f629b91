"""Two sampling calls in many paired rounds, for a ratio with an interval on a machine whose speed drifts. Prints JSON
last.

On a shared 2-core VM the speed moves by tens of per cent within minutes, so ``benchmarks/sampling.py``'s few long
rounds (every contender of one row, then the next row) cannot tell a 10% difference from drift. Here each round runs
the two contenders of one comparison (on the same seed where both are our sampler), one right after the other, in
alternating order, and the figure is the per-round ratio of their rates (tokens generated, end-of-sequence
included, over the wall-clock or the process CPU time of the whole call, prompt pass included), with a t interval
over rounds. CPU time leaves out what the hypervisor takes while a thread is descheduled (``/proc/stat``'s steal,
recorded per call), so it is the steadier of the two. The first round is a warm-up and not counted.

Comparisons (``--compare``):

- ``generate``: our sampler over ``generate(num_return_sequences=n)`` on the same prompt, temperature 1 over the
  whole vocabulary (generate's default top-k of 50 switched off): the issue's ``speedup``.
- ``retention``: our sampler on a ``--long-prompt-tokens`` prompt over the ``--prompt-tokens`` one:
  ``long_prefix_retention``.
- ``step``: our sampler with its own decoding step (``llama_step``) over the same sampler with steps by the model's
  forward pass: ``own_step_gain``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import stats

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.loading import load

from provenance import commit  # noqa: E402  (the script's own folder)
from sampling import generated_tokens, make_prompts  # noqa: E402

COMPARISONS = {"generate": ("ours", "generate"), "retention": ("long", "short"), "step": ("own", "forward")}
DEFAULT_NEW_TOKENS = {"generate": 64, "retention": 64, "step": 16}
DEFAULT_ROUNDS = {"generate": 9, "retention": 9, "step": 21}  # the step's difference is small: more rounds


def steal_jiffies() -> int:
    """Time the hypervisor took from this machine so far (all CPUs, 1/100 s), or 0 where /proc/stat lacks it."""
    try:
        return int(Path("/proc/stat").read_text().split("\n")[0].split()[8])
    except (OSError, IndexError, ValueError):
        return 0


def t_interval(values: np.ndarray) -> dict:
    """Mean of per-round values with a 95% t interval over rounds (no interval from one round)."""
    mean, half = float(values.mean()), 0.0
    if values.size > 1:
        half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return {"mean": round(mean, 4), "low": round(mean - half, 4), "high": round(mean + half, 4),
            "median": round(float(np.median(values)), 4), "rounds": int(values.size)}


def contenders(compare: str, loaded, args) -> tuple[dict[str, Callable[[int], int]], str]:
    """The comparison's two calls, each taking the round's seed and returning the tokens it generated, and how our
    sampler computes its decoding steps."""
    model, tok = loaded.model, loaded.tokenizer
    ours = HFSampler(model, tok)
    short = make_prompts(tok, 1, args.prompt_tokens)

    def sampler_call(sampler: HFSampler, prompts: list[str]) -> Callable[[int], int]:
        def call(seed: int) -> int:
            params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens, seed=seed)
            return sum(len(c.token_ids) for c in sampler.sample(prompts, params)[0])
        return call

    if compare == "retention":
        return {"long": sampler_call(ours, make_prompts(tok, 1, args.long_prompt_tokens)),
                "short": sampler_call(ours, short)}, ours.step
    if compare == "step":
        if ours.step != "llama":
            raise SystemExit(f"the own step is not used for {args.model}: {ours.step_note}")
        forward = HFSampler(model, tok, step="forward")
        return {"own": sampler_call(ours, short), "forward": sampler_call(forward, short)}, ours.step
    encoded = tok(short, return_tensors="pt")

    def generate(seed: int) -> int:
        torch.manual_seed(seed)
        out = model.generate(**encoded, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             num_return_sequences=args.n, max_new_tokens=args.new_tokens, pad_token_id=ours.pad_id)
        return generated_tokens(out[:, encoded["input_ids"].shape[1]:], ours.eos_ids)

    return {"ours": sampler_call(ours, short), "generate": generate}, ours.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=sorted(COMPARISONS), required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"rounds, the first one a warm-up (default: {DEFAULT_ROUNDS})")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--long-prompt-tokens", type=int, default=2048, help="the long prompt (--compare retention)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help=f"new tokens per sample (default: {DEFAULT_NEW_TOKENS})")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.new_tokens is None:
        args.new_tokens = DEFAULT_NEW_TOKENS[args.compare]
    if args.rounds is None:
        args.rounds = DEFAULT_ROUNDS[args.compare]
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    loaded = load(args.model)
    calls, step = contenders(args.compare, loaded, args)
    top, bottom = COMPARISONS[args.compare]
    wall, cpu, steal = ({k: [] for k in calls} for _ in range(3))
    for r in range(args.rounds):
        for name in (list(calls) if r % 2 == 0 else list(reversed(calls))):
            s0, t0, c0 = steal_jiffies(), time.perf_counter(), time.process_time()
            tokens = calls[name](r)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            if r > 0:
                wall[name].append(tokens / seconds)
                cpu[name].append(tokens / cpu_seconds)
                steal[name].append((steal_jiffies() - s0) / 100)
        if r > 0:
            print(f"round {r}: {top} {wall[top][-1]:.1f}, {bottom} {wall[bottom][-1]:.1f} tok/s, ratio "
                  f"{wall[top][-1] / wall[bottom][-1]:.3f}", flush=True)
    print(json.dumps({
        "compare": args.compare, "ratio": f"{top} / {bottom}", "model": args.model, "n": args.n,
        "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads,
        "step": step,
        **({"long_prompt_tokens": args.long_prompt_tokens} if args.compare == "retention" else {}),
        "ratio_wall": t_interval(np.array(wall[top]) / np.array(wall[bottom])),
        "ratio_cpu": t_interval(np.array(cpu[top]) / np.array(cpu[bottom])),
        "tokens_per_s_wall": {k: [round(x, 1) for x in v] for k, v in wall.items()},
        "tokens_per_cpu_s": {k: [round(x, 1) for x in v] for k, v in cpu.items()},
        "steal_seconds": {k: [round(x, 2) for x in v] for k, v in steal.items()},
        "commit": commit(),
    }))


if __name__ == "__main__":
    main()
