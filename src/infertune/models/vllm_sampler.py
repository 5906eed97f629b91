"""vLLM as the sampling engine on a GPU (optional extra: pip install 'infertune[vllm]').

Each sample is its own request (n=1) with a seed derived from (seed, prompt, sample index), as in the other
samplers; vLLM's automatic prefix caching computes each prompt's KV once for all of its samples. Log-probs are
vLLM's raw log-probabilities of the sampled tokens (before temperature), the same convention as ``HFSampler``.
Status: this module has not been run on a GPU yet (no GPU was available when it was written); its absence is
handled by ``load_sampler`` falling back to transformers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from infertune.models.base import Completion, SamplingParams
from infertune.models.seeding import sample_keys, text_key


class VLLMSampler:
    def __init__(self, model: str, *, adapter: str | None = None, dtype: str = "auto", seed: int = 0,
                 gpu_memory_utilization: float = 0.85, **engine_options) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("the vllm backend needs vLLM and a GPU: pip install 'infertune[vllm]'") from exc
        self.name = model
        self.adapter = adapter
        self.llm = LLM(model=model, dtype=dtype, seed=seed, enable_prefix_caching=True,
                       enable_lora=adapter is not None, gpu_memory_utilization=gpu_memory_utilization,
                       **engine_options)

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VParams

        indices = np.arange(params.start_index, params.start_index + params.n)
        requests, settings = [], []
        for prompt in prompts:
            seeds = sample_keys(params.seed, np.full(params.n, text_key(prompt), dtype=np.uint64), indices)
            for seed in seeds:
                requests.append(prompt)
                settings.append(VParams(n=1, temperature=params.temperature, top_p=params.top_p,
                                        max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                                        seed=int(seed % (1 << 31)), logprobs=0))
        lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, self.adapter)
        outputs = self.llm.generate(requests, settings, lora_request=lora, use_tqdm=False)
        results: list[list[Completion]] = [[] for _ in prompts]
        for r, output in enumerate(outputs):
            o = output.outputs[0]
            token_lp = [float(step[t].logprob) for t, step in zip(o.token_ids, o.logprobs or [])]
            results[r // params.n].append(Completion(
                text=o.text, token_ids=list(o.token_ids), logprobs=token_lp,
                finish_reason="length" if o.finish_reason == "length" else "stop",
                index=int(indices[r % params.n])))
        return results
