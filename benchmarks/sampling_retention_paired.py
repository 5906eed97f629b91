"""Long-prefix retention in paired rounds: our sampler on a 2,048-token and a 256-token shared prompt, one right after
the other, in alternating order. Prints JSON last.

``benchmarks/sampling.py`` measures the two rows minutes apart (every contender of the short row, then every one of
the long row), so a drift in machine speed between them moves ``long_prefix_retention`` by more than the target's
margin: its runs on this machine gave 0.54 to 0.75. Here each round draws the same n samples (same seed) for both
prompt lengths back to back, and the figure is the per-round ratio of their rates (tokens generated, end-of-sequence
included, over the wall-clock or process CPU time of the whole call, prompt pass included), with a t interval over
rounds. The first round is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.loading import load

from sampling import make_prompts  # noqa: E402  (the script's own folder)
from sampling_step_paired import steal_jiffies, t_interval  # noqa: E402
from provenance import commit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rounds", type=int, default=9, help="rounds, the first one a warm-up")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--long-prompt-tokens", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    loaded = load(args.model)
    sampler = HFSampler(loaded.model, loaded.tokenizer)
    prompts = {"short": make_prompts(loaded.tokenizer, 1, args.prompt_tokens),
               "long": make_prompts(loaded.tokenizer, 1, args.long_prompt_tokens)}
    wall = {k: [] for k in prompts}
    cpu = {k: [] for k in prompts}
    steal = {k: [] for k in prompts}
    for r in range(args.rounds):
        for name in (list(prompts) if r % 2 == 0 else list(reversed(prompts))):
            params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens, seed=r)
            s0, t0, c0 = steal_jiffies(), time.perf_counter(), time.process_time()
            out = sampler.sample(prompts[name], params)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            tokens = sum(len(c.token_ids) for c in out[0])
            if r > 0:
                wall[name].append(tokens / seconds)
                cpu[name].append(tokens / cpu_seconds)
                steal[name].append((steal_jiffies() - s0) / 100)
        if r > 0:
            print(f"round {r}: short {wall['short'][-1]:.1f}, long {wall['long'][-1]:.1f} tok/s, retention "
                  f"{wall['long'][-1] / wall['short'][-1]:.3f}", flush=True)
    print(json.dumps({
        "model": args.model, "n": args.n, "prompt_tokens": args.prompt_tokens,
        "long_prompt_tokens": args.long_prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads,
        "step": sampler.step,
        "long_prefix_retention_wall": t_interval(np.array(wall["long"]) / np.array(wall["short"])),
        "long_prefix_retention_cpu": t_interval(np.array(cpu["long"]) / np.array(cpu["short"])),
        "tokens_per_s_wall": {k: [round(v, 1) for v in vals] for k, vals in wall.items()},
        "steal_seconds": {k: [round(v, 2) for v in vals] for k, vals in steal.items()},
        "commit": commit(),
    }))


if __name__ == "__main__":
    main()
