"""The local sampler for any transformers causal LM: each prompt is computed once, its KV cache shared by n samples.

``generate(num_return_sequences=n)`` copies the prompt n times and runs the prompt through the model n times.
Here a batch of prompts is prefilled once (left-padded), the cache is expanded to n rows per prompt, and decoding runs
over all rows, dropping a row from the batch as soon as it finishes. Randomness comes from ``seeding``: inverse-CDF
sampling with one uniform per (sample, step), so a sample depends on its seed, prompt and index only.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from infertune.models.base import Completion, SamplingParams
from infertune.models.seeding import sample_keys, text_key, uniforms


class HFSampler:
    """Samples from a transformers causal LM with shared prompt prefill."""

    def __init__(self, model, tokenizer, *, name: str = "hf", max_rows: int = 256, add_special_tokens: bool = True,
                 progress: Callable[[int], None] | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_rows = max_rows
        self.add_special_tokens = add_special_tokens
        self.progress = progress
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an end-of-sequence token")
        self.pad_id = int(pad)
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = sorted({int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None})

    @property
    def device(self):
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(p, add_special_tokens=self.add_special_tokens)["input_ids"] for p in prompts]

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """n completions for every prompt, in prompt order and sample-index order."""
        encoded = self.encode(prompts)
        for i, ids in enumerate(encoded):
            if not ids:
                raise ValueError(f"prompt {i} encodes to no tokens")
        keys = np.array([text_key(p) for p in prompts], dtype=np.uint64)
        results: list[list[Completion]] = [[] for _ in prompts]
        per_batch = max(1, self.max_rows // params.n)
        # Similar lengths together waste less padding; results go back to prompt order.
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), per_batch):
            batch = order[start : start + per_batch]
            outs = self._sample_batch([encoded[i] for i in batch], keys[batch], params)
            for i, completions in zip(batch, outs):
                results[i] = completions
            if self.progress is not None:
                self.progress(len(batch))
        return results

    def _sample_batch(self, prompt_ids: list[list[int]], prompt_keys: np.ndarray,
                      params: SamplingParams) -> list[list[Completion]]:
        import torch

        n, device = params.n, self.device
        n_prompts = len(prompt_ids)
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((n_prompts, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n_prompts, width), dtype=torch.long)
        for b, ids in enumerate(prompt_ids):
            input_ids[b, width - len(ids):] = torch.tensor(ids)
            attention[b, width - len(ids):] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)

        rows = n_prompts * n
        indices = np.tile(np.arange(params.start_index, params.start_index + n), n_prompts)
        keys = sample_keys(params.seed, np.repeat(prompt_keys, n), indices)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        finish = ["length"] * rows
        stop_at: dict[int, int] = {}  # row -> character offset of the first stop string
        eos = torch.tensor(self.eos_ids, device=device) if self.eos_ids else None
        longest_stop = max((len(s) for s in params.stop), default=0)

        with torch.inference_mode():
            out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float().repeat_interleave(n, dim=0)
            del out
            if n > 1:
                cache.batch_repeat_interleave(n)
            attention = attention.repeat_interleave(n, dim=0)
            next_position = positions[:, -1].repeat_interleave(n, dim=0) + 1
            active = np.arange(rows)
            for step in range(params.max_new_tokens):
                chosen = self._choose(logits, params, keys[active], step)
                chosen_lp = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None])[:, 0]
                done = np.zeros(active.size, dtype=bool)
                if eos is not None:
                    done |= torch.isin(chosen, eos).cpu().numpy()
                chosen_list, lp_list = chosen.tolist(), chosen_lp.tolist()
                for j, row in enumerate(active):
                    tokens[row].append(chosen_list[j])
                    logprobs[row].append(lp_list[j])
                    if done[j]:
                        finish[row] = "stop"
                    elif longest_stop:
                        offset = self._stop_offset(tokens[row], params.stop, longest_stop)
                        if offset is not None:
                            stop_at[row] = offset
                            finish[row] = "stop"
                            done[j] = True
                if done.all() or step == params.max_new_tokens - 1:
                    break
                if done.any():
                    keep = np.flatnonzero(~done)
                    keep_t = torch.as_tensor(keep, device=device)
                    cache.batch_select_indices(keep_t)
                    attention, next_position, chosen = attention[keep_t], next_position[keep_t], chosen[keep_t]
                    active = active[keep]
                attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=1)
                out = self.model(input_ids=chosen[:, None], attention_mask=attention,
                                 position_ids=next_position[:, None], past_key_values=cache, use_cache=True)
                logits = out.logits[:, -1, :].float()
                next_position = next_position + 1

        completions: list[list[Completion]] = [[] for _ in range(n_prompts)]
        for row in range(rows):
            ids = tokens[row]
            text_ids = ids[:-1] if finish[row] == "stop" and row not in stop_at else ids
            text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
            if row in stop_at:
                text = text[: stop_at[row]]
            completions[row // n].append(Completion(text=text, token_ids=ids, logprobs=logprobs[row],
                                                    finish_reason=finish[row], index=int(indices[row])))
        return completions

    def _stop_offset(self, ids: list[int], stops: list[str], longest: int) -> int | None:
        """Character offset of the first stop string in the decoded text, once one has appeared."""
        tail = self.tokenizer.decode(ids[-(longest + 8):], skip_special_tokens=True)
        if not any(s in tail for s in stops):
            return None
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return min(text.find(s) for s in stops if s in text)

    @staticmethod
    def _choose(logits, params: SamplingParams, keys: np.ndarray, step: int):
        import torch

        if params.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.double() / params.temperature, dim=-1)
        u = torch.as_tensor(uniforms(keys, step), device=logits.device, dtype=probs.dtype)[:, None]
        if params.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            cumulative = sorted_probs.cumsum(-1)
            # Keep the smallest set of most likely tokens whose mass reaches top_p.
            sorted_probs = torch.where(cumulative - sorted_probs < params.top_p, sorted_probs, 0.0)
            cdf = sorted_probs.cumsum(-1)
            pick = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=probs.shape[-1] - 1)
            return order.gather(1, pick)[:, 0]
        cdf = probs.cumsum(-1)
        return torch.searchsorted(cdf, u * cdf[:, -1:])[:, 0].clamp(max=probs.shape[-1] - 1)
