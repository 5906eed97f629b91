"""The sampling benchmark's FLOP count against PyTorch's own counter, on a tiny Llama: the long-prefix row's
``equal_efficiency_retention`` (and the README's reading of the retention target) rests on it."""

import importlib.util
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")


def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sampling.py"
    spec = importlib.util.spec_from_file_location("sampling_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("prompts,prompt_tokens,new_tokens,n,tied", [(1, 11, 5, 3, False), (1, 1, 2, 1, False),
                                                                       (1, 7, 1, 4, False), (2, 9, 4, 3, True)])
def test_workload_gflop_matches_torch_flop_counter(prompts, prompt_tokens, new_tokens, n, tied):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=24, tie_word_embeddings=tied,
                         attn_implementation="eager")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            out = model(torch.randint(0, 101, (prompts, prompt_tokens), generator=generator), use_cache=True,
                        logits_to_keep=1)
        prompt_flops = counter.get_total_flops()
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        decoding_flops = 0
        for _ in range(new_tokens - 1):
            with FlopCounterMode(display=False) as counter:
                model(torch.randint(0, 101, (prompts * n, 1), generator=generator), past_key_values=cache,
                      use_cache=True)
            decoding_flops += counter.get_total_flops()
    counted = _benchmark().workload_gflop(model, prompt_tokens, new_tokens, n, prompts)
    # Eager attention multiplies the whole square of the prompt's scores and masks the upper triangle; the benchmark
    # counts the lower triangle, the arithmetic causal attention needs (the counter sees nothing of PyTorch's fused
    # CPU kernel, so the triangle itself is not checked independently).
    masked = prompts * 4 * config.num_attention_heads * config.head_dim * config.num_hidden_layers * (
        prompt_tokens * (prompt_tokens - 1) // 2)
    assert counted["prompt_pass"] * 1e9 == pytest.approx(prompt_flops - masked, rel=1e-12)
    assert counted["decoding"] * 1e9 == pytest.approx(decoding_flops, rel=1e-12)
    assert counted["total"] == pytest.approx(counted["prompt_pass"] + counted["decoding"])
