"""Our shared-prefix sampler against transformers' generate(num_return_sequences=n), measured in one run.

Same model, prompts and settings for both: n=32 samples per prompt, prompts of about 256 tokens, 64 new tokens,
temperature 1, full-vocabulary sampling (generate's default top-k of 50 is switched off). Runs alternate between the
two (ours, generate, ours, generate, ...) so that drifts in machine speed hit both. Tokens are the generated ones up
to and including end-of-sequence, never padding. Prints a JSON list as its last line, one object per model.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.loading import load

PARAGRAPH = ("Best-of-N sampling draws several candidate answers from a language model and keeps the one a verifier "
             "scores highest. Majority voting keeps the most common final answer instead. Both spend more compute at "
             "inference time to get better answers, and both work best when the samples are diverse. ")


def make_prompts(tokenizer, count: int, length: int) -> list[str]:
    prompts = []
    for i in range(count):
        text = f"Document {i}. "
        while len(tokenizer(text)["input_ids"]) < length:
            text += PARAGRAPH
        ids = tokenizer(text)["input_ids"][:length]
        prompts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return prompts


def generated_tokens(rows: torch.Tensor, eos_ids: list[int]) -> int:
    """Tokens generate produced per row, up to and including the first end-of-sequence."""
    total = 0
    for row in rows.tolist():
        count = len(row)
        for j, t in enumerate(row):
            if t in eos_ids:
                count = j + 1
                break
        total += count
    return total


def bench(spec: str, prompts_count: int, rounds: int, n: int, prompt_tokens: int, new_tokens: int) -> dict:
    loaded = load(spec)
    model, tok = loaded.model, loaded.tokenizer
    torch.set_grad_enabled(False)
    prompts = make_prompts(tok, prompts_count, prompt_tokens)
    sampler = HFSampler(model, tok, name=spec)
    params = SamplingParams(n=n, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens, seed=0)
    encoded = tok(prompts, return_tensors="pt", padding=True)
    eos = sampler.eos_ids
    ours_t = theirs_t = 0.0
    ours_tok = theirs_tok = 0
    for r in range(rounds):
        t = time.perf_counter()
        out = sampler.sample(prompts, params)
        ours_t += time.perf_counter() - t
        ours_tok += sum(len(c.token_ids) for cs in out for c in cs)
        t = time.perf_counter()
        gen = model.generate(**encoded, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             num_return_sequences=n, max_new_tokens=new_tokens, pad_token_id=sampler.pad_id)
        theirs_t += time.perf_counter() - t
        theirs_tok += generated_tokens(gen[:, encoded["input_ids"].shape[1]:], eos)
        print(f"{spec} round {r + 1}/{rounds}: ours {ours_tok / ours_t:.0f} tok/s, "
              f"generate {theirs_tok / theirs_t:.0f} tok/s", flush=True)
    ours_rate, theirs_rate = ours_tok / ours_t, theirs_tok / theirs_t
    return {"model": spec, "ours_tokens_per_s": round(ours_rate, 1), "generate_tokens_per_s": round(theirs_rate, 1),
            "speedup": round(ours_rate / theirs_rate, 2), "prompts": prompts_count, "n": n,
            "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "rounds": rounds,
            "ours_seconds": round(ours_t, 2), "generate_seconds": round(theirs_t, 2),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    sizes = {"tiny": (4, 3), "smollm2": (1, 2)}  # (prompts, rounds): SmolLM2's generate baseline is slow on a CPU
    results = []
    for spec in args.models.split(","):
        prompts_count, rounds = sizes.get(spec, (1, 2))
        results.append(bench(spec, prompts_count, rounds, args.n, args.prompt_tokens, args.new_tokens))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
