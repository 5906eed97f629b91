"""The local sampler for any transformers causal LM: each prompt is computed once and shared by its n samples.

``generate(num_return_sequences=n)`` copies the prompt n times and runs the prompt through the model n times.
Here a batch of prompts is prefilled once (left-padded), and decoding runs over all n rows per prompt, dropping a
row from the batch as soon as it finishes. How the n rows share the prompt depends on the model:

- ``shared`` (Llama-family and other models whose attention goes through transformers' attention interface): the
  prompt's keys and values are kept once, and each step's attention is split into prefix and suffix parts combined
  exactly (``shared_prefix``), so a step's cost barely grows with the prompt's length.
- ``copy`` (any other causal LM): the prompt's KV cache is repeated n times (``batch_repeat_interleave``).

Randomness comes from ``seeding``: inverse-CDF sampling with one uniform per (sample, step), so a sample depends on
its seed, prompt and index only, on either path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from infertune.models.base import Completion, SamplingParams
from infertune.models.choice import choose_tokens, top_logprobs
from infertune.models.seeding import sample_keys, text_key, uniforms

ATTENTION_MODES = ("auto", "shared", "copy")
STEP_MODES = ("auto", "forward")


@dataclass
class TokenEvent:
    """One generated token of one sample, as ``HFSampler.stream`` hands it out."""

    prompt: int  # index of the prompt in the call
    sample: int  # 0 .. n-1 within the prompt (its sample index is start_index + sample)
    token_id: int
    logprob: float  # at temperature 1
    top_logprobs: dict[int, float] = field(default_factory=dict)
    finish_reason: str | None = None  # "stop" or "length" on the sample's last token
    completion: Completion | None = None  # the finished sample, on its last token


class HFSampler:
    """Samples from a transformers causal LM with shared prompt prefill.

    attention: "auto" (shared-prefix attention where the model supports it, else copies), "shared" (refuse a model
    that does not support it) or "copy" (always repeat the prompt's cache, the reference path).
    step: "auto" (decoding steps on the shared-prefix path computed by ``llama_step`` where the model has the Llama
    form, else the model's forward pass) or "forward" (always the model's forward pass, the reference).
    """

    def __init__(self, model, tokenizer, *, name: str = "hf", max_rows: int = 256, add_special_tokens: bool = True,
                 progress: Callable[[int], None] | None = None, attention: str = "auto", step: str = "auto") -> None:
        from infertune.models import llama_step, shared_prefix

        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        if step not in STEP_MODES:
            raise ValueError(f"step must be one of {STEP_MODES}, got {step!r}")
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
        reason = shared_prefix.supports(model) if attention != "copy" else "copies were asked for"
        if attention == "shared" and reason is not None:
            raise ValueError(f"shared-prefix attention is not available for this model: {reason}")
        self.attention = "shared" if reason is None else "copy"
        self.attention_note = reason  # why the copy path is used, if it is
        step_reason = llama_step.unsupported(model) if step == "auto" else "the forward pass was asked for"
        self.step = "llama" if self.attention == "shared" and step_reason is None else "forward"
        self.step_note = step_reason if self.attention == "shared" else "the copy path decodes by forward passes"

    @property
    def device(self):
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(p, add_special_tokens=self.add_special_tokens)["input_ids"] for p in prompts]

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """n completions for every prompt, in prompt order and sample-index order."""
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        for event in self.stream(prompts, params):
            if event.completion is not None:
                results[event.prompt][event.sample] = event.completion
        return results  # type: ignore[return-value]

    def stream(self, prompts: Sequence[str], params: SamplingParams) -> Iterator[TokenEvent]:
        """The same samples as ``sample``, one event per generated token as decoding goes (a prompt's rows advance
        together; the event of a sample's last token carries its finished ``Completion``)."""
        encoded = self.encode(prompts)
        for i, ids in enumerate(encoded):
            if not ids:
                raise ValueError(f"prompt {i} encodes to no tokens")
        keys = np.array([text_key(p) for p in prompts], dtype=np.uint64)
        per_batch = max(1, self.max_rows // params.n)
        # Similar lengths together waste less padding.
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), per_batch):
            batch = order[start : start + per_batch]
            for event in self._decode([encoded[i] for i in batch], keys[batch], params):
                event.prompt = batch[event.prompt]
                yield event
            if self.progress is not None:
                self.progress(len(batch))

    def _decoder(self, n: int, capacity: int):
        if self.attention == "shared":
            # Checked again for every batch: an adapter or a hook added since the sampler was made rules it out.
            from infertune.models.llama_step import unsupported

            own_step = self.step == "llama" and unsupported(self.model) is None
            return _SharedPrefixDecoder(self.model, n, capacity, own_step=own_step)
        return _CopiedCacheDecoder(self.model, n)

    def _decode(self, prompt_ids: list[list[int]], prompt_keys: np.ndarray,
                params: SamplingParams) -> Iterator[TokenEvent]:
        import torch

        n, device = params.n, self.device
        n_prompts = len(prompt_ids)
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((n_prompts, width), self.pad_id, dtype=torch.long)
        valid = torch.zeros((n_prompts, width), dtype=torch.bool)
        for b, ids in enumerate(prompt_ids):
            input_ids[b, width - len(ids):] = torch.tensor(ids)
            valid[b, width - len(ids):] = True
        input_ids, valid = input_ids.to(device), valid.to(device)

        rows = n_prompts * n
        indices = np.tile(np.arange(params.start_index, params.start_index + n), n_prompts)
        keys = sample_keys(params.seed, np.repeat(prompt_keys, n), indices)
        max_new, top_k = params.max_new_tokens, params.top_logprobs
        tokens = np.zeros((rows, max_new), dtype=np.int64)
        logprobs = np.zeros((rows, max_new), dtype=np.float64)
        tops: list[list[dict[int, float]]] = [[] for _ in range(rows)]
        eos = np.array(self.eos_ids, dtype=np.int64)
        longest_stop = max((len(s) for s in params.stop), default=0)
        # Each row's next position: its prompt's length, then one more per step.
        next_position = torch.as_tensor(np.repeat([len(ids) for ids in prompt_ids], n), device=device)

        decoder = self._decoder(n, max_new)
        with torch.inference_mode():
            logits = decoder.prefill(input_ids, valid).repeat_interleave(n, dim=0)
        active = np.arange(rows)
        for step in range(max_new):
            with torch.inference_mode():
                u = None if params.temperature == 0 else torch.from_numpy(uniforms(keys[active], step))
                chosen, chosen_lp = choose_tokens(logits, u, params.temperature, params.top_p)
                chosen_np, lp_np = chosen.cpu().numpy(), chosen_lp.double().cpu().numpy()
                if top_k:
                    top_lp, top_ids = top_logprobs(logits, top_k)
                    for j, row in enumerate(active):
                        tops[row].append(dict(zip(top_ids[j].tolist(), top_lp[j].double().tolist())))
            tokens[active, step], logprobs[active, step] = chosen_np, lp_np
            done = np.isin(chosen_np, eos)
            finish = np.where(done, "stop", "length" if step == max_new - 1 else "").astype(object)
            cut: dict[int, int] = {}  # j -> character offset of the first stop string
            if longest_stop:
                for j in np.flatnonzero(~done):
                    offset = self._stop_offset(tokens[active[j], : step + 1].tolist(), params.stop, longest_stop)
                    if offset is not None:
                        cut[j], finish[j], done[j] = offset, "stop", True
            for j, row in enumerate(active):
                completion = None
                if finish[j]:
                    completion = self._completion(tokens[row, : step + 1].tolist(),
                                                  logprobs[row, : step + 1].tolist(), tops[row], finish[j],
                                                  cut.get(j), int(indices[row]))
                yield TokenEvent(prompt=int(row // n), sample=int(row % n), token_id=int(chosen_np[j]),
                                 logprob=float(lp_np[j]), top_logprobs=tops[row][-1] if top_k else {},
                                 finish_reason=finish[j] or None, completion=completion)
            if done.all() or step == max_new - 1:
                break
            with torch.inference_mode():
                if done.any():
                    keep = np.flatnonzero(~done)
                    keep_t = torch.as_tensor(keep, device=device)
                    decoder.keep_rows(keep_t)
                    next_position, chosen = next_position[keep_t], chosen[keep_t]
                    active = active[keep]
                logits = decoder.step(chosen, next_position)
                next_position = next_position + 1

    def _completion(self, ids: list[int], logprobs: list[float], tops: list[dict[int, float]], finish: str,
                    stop_offset: int | None, index: int) -> Completion:
        """A finished sample: its text ends before an end-of-sequence token or a stop string."""
        text_ids = ids[:-1] if finish == "stop" and stop_offset is None else ids
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
        if stop_offset is not None:
            text = text[:stop_offset]
        return Completion(text=text, token_ids=ids, logprobs=logprobs, finish_reason=finish, index=index,
                          top_logprobs=tops)

    def _stop_offset(self, ids: list[int], stops: list[str], longest: int) -> int | None:
        """Character offset of the first stop string in the decoded text, once one has appeared."""
        tail = self.tokenizer.decode(ids[-(longest + 8):], skip_special_tokens=True)
        if not any(s in tail for s in stops):
            return None
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return min(text.find(s) for s in stops if s in text)


class _SharedPrefixDecoder:
    """Prompt pass and decoding steps with the prompt's keys and values kept once (see ``shared_prefix``)."""

    def __init__(self, model, n: int, capacity: int, own_step: bool = False) -> None:
        from infertune.models.shared_prefix import SharedPrefixKV

        self.model, self.own_step = model, own_step
        self.state = SharedPrefixKV(n=n, capacity=capacity)

    def _forward(self, input_ids, position_ids):
        from infertune.models.shared_prefix import KWARG, shared_prefix_attention

        with shared_prefix_attention(self.model):
            out = self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False, logits_to_keep=1,
                             **{KWARG: self.state})
        return out.logits[:, -1, :]

    def prefill(self, input_ids, valid):
        """Logits of the next token after each prompt, [prompts, vocab]."""
        self.state.prefix_valid = None if bool(valid.all()) else valid
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(input_ids, positions)
        self.state.start_decoding()
        return logits

    def step(self, tokens, positions):
        """Logits after feeding one token per row, [rows, vocab]."""
        from infertune.models.llama_step import THIN_ROWS, decode_step

        if self.own_step and tokens.shape[0] <= THIN_ROWS:
            logits = decode_step(self.model, tokens, positions, self.state)
        else:
            logits = self._forward(tokens[:, None], positions[:, None])
        self.state.advance()
        return logits

    def keep_rows(self, keep) -> None:
        self.state.keep_rows(keep)


class _CopiedCacheDecoder:
    """The reference path for any causal LM: the prompt's KV cache repeated n times, decoded with transformers'
    own cache and attention."""

    def __init__(self, model, n: int) -> None:
        import inspect

        self.model, self.n = model, n
        self.cache = self.attention = None
        base = getattr(model, "get_base_model", lambda: model)()
        # Only the last position's logits are needed; older model classes compute them all.
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}

    def prefill(self, input_ids, valid):
        attention = valid.long()
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                         **self.extra)
        self.cache = out.past_key_values
        if self.n > 1:
            self.cache.batch_repeat_interleave(self.n)
        self.attention = attention.repeat_interleave(self.n, dim=0)
        return out.logits[:, -1, :]

    def step(self, tokens, positions):
        import torch

        self.attention = torch.cat([self.attention, self.attention.new_ones((self.attention.shape[0], 1))], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.attention, position_ids=positions[:, None],
                         past_key_values=self.cache, use_cache=True, **self.extra)
        return out.logits[:, -1, :]

    def keep_rows(self, keep) -> None:
        self.cache.batch_select_indices(keep)
        self.attention = self.attention[keep]
