"""llama.cpp through llama-cpp-python on one prompt, n samples: the CPU engine a practitioner would reach for.

Run by benchmarks/sampling.py with an interpreter that has llama-cpp-python (which stays out of infertune's own
environment); reads the prompt on standard input. The high-level API draws one completion per call; calls after the
first reuse the prompt's cached keys and values (llama-cpp-python keeps the longest common prefix), so the prompt is
evaluated once per round, as in our sampler. Sampling is plain temperature 1 over the whole vocabulary (top-k, top-p,
min-p and repetition penalty switched off). Prints one JSON object as its last line.

``--batched``: the way llama.cpp itself draws n samples of one prompt at once (as its batched example and its
server's parallel slots do), through llama-cpp-python's low-level API: the prompt decoded once as sequence 0, its
cache shared with sequences 1 .. n − 1 (one unified cache, no copies), then every step one batch holding each live
sequence's last token, each sequence sampled by its own seeded temperature-1 sampler. A sequence stops at
end-of-generation or after ``--new-tokens``; the end-of-generation token counts as generated, as in our sampler.

Both modes load the weights into plain CPU buffers (``use_extra_bufts`` off): built natively on the AMX machine of
2026-11-23, llama.cpp 0.3.36 placed the Q4_1 weights in its AMX buffers and crashed (segmentation fault in
``ggml_backend_amx_mul_mat``) on the first decode, in both modes. ``--extra-buffers`` turns them back on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def batched(gguf: str, prompt: str, n: int, new_tokens: int, rounds: int, threads: int) -> dict:
    """n samples of one prompt decoded together in llama.cpp; returns the timing row."""
    import llama_cpp as L

    L.llama_backend_init()
    model = L.llama_model_load_from_file(gguf.encode(), L.llama_model_default_params())
    if not model:
        raise SystemExit(f"{gguf}: llama_model_load_from_file failed (see its log above)")
    vocab = L.llama_model_get_vocab(model)
    raw = prompt.encode()
    ids = (L.llama_token * (len(raw) + 8))()
    count = L.llama_tokenize(vocab, raw, len(raw), ids, len(ids), True, True)
    if count < 0:
        raise SystemExit(f"tokenizing the prompt failed ({count})")
    tokens = list(ids[:count])
    params = L.llama_context_default_params()
    params.n_ctx = len(tokens) + n * new_tokens + 64
    params.n_batch = params.n_ubatch = max(len(tokens), n)
    params.n_seq_max = n
    params.kv_unified = True
    params.n_threads = params.n_threads_batch = threads
    ctx = L.llama_init_from_model(model, params)
    if not ctx:
        raise SystemExit("llama_init_from_model failed (see its log above)")
    batch = L.llama_batch_init(max(len(tokens), n), 0, n)

    def put(j: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = token, pos, 1, logits
        batch.seq_id[j][0] = seq

    def one_round(count_n: int, tokens_n: int, seed0: int) -> int:
        memory = L.llama_get_memory(ctx)
        L.llama_memory_clear(memory, True)
        for j, token in enumerate(tokens):
            put(j, token, j, 0, j == len(tokens) - 1)
        batch.n_tokens = len(tokens)
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on the prompt")
        for seq in range(1, count_n):
            L.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        samplers = [L.llama_sampler_init_dist(seed0 + seq) for seq in range(count_n)]
        row_of = {seq: len(tokens) - 1 for seq in range(count_n)}
        generated = 0
        for step in range(tokens_n):
            batch.n_tokens = 0
            for seq in list(row_of):
                token = L.llama_sampler_sample(samplers[seq], ctx, row_of[seq])
                generated += 1
                if L.llama_vocab_is_eog(vocab, token) or step == tokens_n - 1:
                    del row_of[seq]
                    continue
                put(batch.n_tokens, token, len(tokens) + step, seq, True)
                row_of[seq] = batch.n_tokens
                batch.n_tokens += 1
            if not row_of:
                break
            if L.llama_decode(ctx, batch) != 0:
                raise SystemExit("llama_decode failed while decoding")
        for sampler in samplers:
            L.llama_sampler_free(sampler)
        return generated

    one_round(2, 4, 10_000)  # warm-up
    seconds, generated = 0.0, 0
    for r in range(rounds):
        t = time.perf_counter()
        generated += one_round(n, new_tokens, r * n)
        seconds += time.perf_counter() - t
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return {"model": "smollm2-llama.cpp-batched", "tokens_per_s": round(generated / seconds, 1),
            "seconds": round(seconds, 2), "tokens_generated": generated, "prompt_tokens": len(tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batched", action="store_true", help="decode the n samples together (see above)")
    parser.add_argument("--extra-buffers", action="store_true", help="let llama.cpp repack weights (AMX, ...)")
    args = parser.parse_args()
    import llama_cpp
    import llama_cpp.llama_cpp as bindings
    from llama_cpp import Llama, __version__

    if not args.extra_buffers:
        defaults = bindings.llama_model_default_params

        def plain_buffers():
            params = defaults()
            params.use_extra_bufts = False
            return params

        # Read at call time by Llama() (through the bindings module) and by batched() (through the package).
        bindings.llama_model_default_params = llama_cpp.llama_model_default_params = plain_buffers

    prompt = sys.stdin.read()
    if args.batched:
        row = batched(args.gguf, prompt, args.n, args.new_tokens, args.rounds, args.threads)
        row.update(engine=f"llama-cpp-python {__version__}", gguf=args.gguf.rsplit("/", 1)[-1], n=args.n,
                   new_tokens=args.new_tokens, rounds=args.rounds, threads=args.threads,
                   extra_buffers=args.extra_buffers)
        print(json.dumps(row))
        return
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
                      "new_tokens": args.new_tokens, "rounds": args.rounds, "threads": args.threads,
                      "extra_buffers": args.extra_buffers}))


if __name__ == "__main__":
    main()
