"""Training-step throughput and model FLOP utilisation (MFU) of the tiny model, measured in one run.

MFU = achieved FLOP/s of the update (forward, backward and AdamW over the step's sequences) divided by this
machine's fp32 matmul FLOP/s, measured here with large square matmuls. Model FLOPs follow the PaLM convention:
6·N per token (N: non-embedding parameters plus the output head) plus 12·layers·d_model·length per token for
attention, counted on real tokens only (padding is work we do not credit ourselves with). Every sampled sequence
gets a non-zero weight, as mid-training with dense rewards. samples_per_s covers the whole RL step: sampling n
completions per prompt, rewards, weights and the update. Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from infertune.train import TrainConfig, Trainer


def matmul_flops(size: int = 2048, reps: int = 6) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def model_flops(model, lengths: list[int]) -> float:
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    n += cfg.vocab_size * cfg.hidden_size  # the output head is computed even when tied to the embedding
    tokens = sum(lengths)
    attention = sum(12 * cfg.num_hidden_layers * cfg.hidden_size * length * length for length in lengths)
    return 6 * n * tokens + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    peak = matmul_flops()
    trainer = Trainer(TrainConfig(task="arith", task_option=["size=2000"], objective="rloo", n=args.n, k=1,
                                  batch_prompts=args.prompts, micro_batch=args.prompts * args.n, max_new_tokens=16,
                                  eval_prompts=100, checkpoint_every=0, out="/tmp/infertune-bench-train"))
    update_s = collect_s = flops = 0.0
    samples = 0
    for step in range(args.steps):
        batch = trainer.collect()
        # Every sampled sequence takes part, as when rewards are dense (a random model earns none on its own).
        batch.prompts, batch.tokens, batch.weights, batch.dco = [], [], [], []
        for prompt, row in zip(batch.row_prompts, batch.completions):
            for c in row:
                batch.add(prompt, c.token_ids, 1.0 / len(batch.completions) / args.n)
        stats = trainer.update(batch)
        if step == 0:
            continue  # the first step pays for allocations and caches
        update_s += stats["update_seconds"]
        collect_s += batch.collect_seconds
        flops += model_flops(trainer.model, [len(p) + len(t) for p, t in zip(batch.prompts, batch.tokens)])
        samples += sum(len(row) for row in batch.completions)
    achieved = flops / update_s
    print(json.dumps({
        "samples_per_s": round(samples / (update_s + collect_s), 1), "mfu": round(achieved / peak, 3),
        "achieved_gflops": round(achieved / 1e9, 1), "peak_matmul_gflops": round(peak / 1e9, 1),
        "update_seconds_per_step": round(update_s / (args.steps - 1), 3),
        "collect_seconds_per_step": round(collect_s / (args.steps - 1), 3),
        "sequences_per_step": args.prompts * args.n, "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in trainer.model.parameters()),
    }))


if __name__ == "__main__":
    main()
