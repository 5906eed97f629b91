"""llama.cpp through llama-cpp-python on one prompt, n samples: the CPU engine a practitioner would reach for.

Run by benchmarks/sampling.py with an interpreter that has llama-cpp-python (which stays out of infertune's own
environment); reads the prompt on standard input. The high-level API draws one completion per call; calls after the
first reuse the prompt's cached keys and values (llama-cpp-python keeps the longest common prefix), so the prompt is
evaluated once per round, as in our sampler. Sampling is plain temperature 1 over the whole vocabulary (top-k, top-p,
min-p and repetition penalty switched off). Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from llama_cpp import Llama, __version__

    prompt = sys.stdin.read()
    llm = Llama(model_path=args.gguf, n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads,
                verbose=False)

    def run(count: int, tokens: int, seed0: int) -> int:
        llm.reset()  # each round starts without a cached prompt, as a new prompt would
        total = 0
        for i in range(count):
            out = llm.create_completion(prompt, max_tokens=tokens, temperature=1.0, top_p=1.0, top_k=0, min_p=0.0,
                                        repeat_penalty=1.0, seed=seed0 + i)
            total += out["usage"]["completion_tokens"]
        return total

    run(2, 4, 10_000)  # warm-up
    seconds, generated = 0.0, 0
    for r in range(args.rounds):
        t = time.perf_counter()
        generated += run(args.n, args.new_tokens, r * args.n)
        seconds += time.perf_counter() - t
    print(json.dumps({"model": "smollm2-llama.cpp", "engine": f"llama-cpp-python {__version__}",
                      "gguf": args.gguf.rsplit("/", 1)[-1], "tokens_per_s": round(generated / seconds, 1),
                      "seconds": round(seconds, 2), "tokens_generated": generated, "n": args.n,
                      "new_tokens": args.new_tokens, "rounds": args.rounds, "threads": args.threads}))


if __name__ == "__main__":
    main()
