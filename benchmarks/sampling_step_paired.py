"""The sampler's own decoding step against the model's forward pass, in many short paired rounds. Prints JSON last.

On a machine whose speed drifts by tens of per cent within minutes (a shared 2-core VM), a few long rounds cannot
tell a 10% difference from drift. Here each round runs both (``HFSampler`` with ``step="auto"``, which computes
SmolLM2's steps with ``llama_step``, and ``step="forward"``) on the same prompt and seed, one right after the other,
in alternating order, and the figure is the per-round ratio of their rates, with a t interval over rounds. Both
wall-clock and process CPU time are recorded (CPU time leaves out time the hypervisor takes from this machine,
which /proc/stat reports as steal). The first round is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.loading import load

from sampling import make_prompts  # noqa: E402  (the script's own folder)


def steal_jiffies() -> int:
    """Time the hypervisor took from this machine so far (all CPUs, 1/100 s), or 0 where /proc/stat lacks it."""
    try:
        return int(Path("/proc/stat").read_text().split("\n")[0].split()[8])
    except (OSError, IndexError, ValueError):
        return 0


def t_interval(values: np.ndarray) -> dict:
    mean, half = float(values.mean()), 0.0
    if values.size > 1:
        half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return {"mean": round(mean, 4), "low": round(mean - half, 4), "high": round(mean + half, 4),
            "median": round(float(np.median(values)), 4), "rounds": int(values.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rounds", type=int, default=21, help="rounds, the first one a warm-up")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load(args.model)
    model, tok = loaded.model, loaded.tokenizer
    prompts = make_prompts(tok, 1, args.prompt_tokens)
    samplers = {"own": HFSampler(model, tok), "forward": HFSampler(model, tok, step="forward")}
    if samplers["own"].step != "llama":
        raise SystemExit(f"the own step is not used for {args.model}: {samplers['own'].step_note}")
    wall = {k: [] for k in samplers}
    cpu = {k: [] for k in samplers}
    steal = {k: [] for k in samplers}
    for r in range(args.rounds):
        order = list(samplers) if r % 2 == 0 else list(reversed(samplers))
        for name in order:
            params = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.new_tokens, seed=r)
            s0, t0, c0 = steal_jiffies(), time.perf_counter(), time.process_time()
            out = samplers[name].sample(prompts, params)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            tokens = sum(len(c.token_ids) for c in out[0])
            if r > 0:
                wall[name].append(tokens / seconds)
                cpu[name].append(tokens / cpu_seconds)
                steal[name].append((steal_jiffies() - s0) / 100)
    result = {
        "model": args.model, "n": args.n, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
        "threads": args.threads,
        "own_over_forward_wall": t_interval(np.array(wall["own"]) / np.array(wall["forward"])),
        "own_over_forward_cpu": t_interval(np.array(cpu["own"]) / np.array(cpu["forward"])),
        "tokens_per_s_wall": {k: [round(x, 1) for x in v] for k, v in wall.items()},
        "tokens_per_cpu_s": {k: [round(x, 1) for x in v] for k, v in cpu.items()},
        "steal_seconds_per_call": {k: round(float(np.mean(v)), 2) for k, v in steal.items()},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=Path(__file__).parent).stdout.strip(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
