"""Exact attention for n samples that share one prompt, without copying the prompt's keys and values n times.

Copying a prompt's KV cache for each of its n samples makes every decoding step read n copies of the same keys and
values, and the cost grows with the prompt's length. Hydragen (Juravsky et al., 2024) splits a step's attention in
two: every sample's query against the one shared prefix, where the n queries of a prompt stack into one matrix
product, and each sample's query against its own suffix (the tokens it has generated). Each part is a softmax over
its own keys; the two are combined exactly with their log-sum-exps:

    out = (e^{m_p} · Σ_p · o_p + e^{m_s} · Σ_s · o_s) / (e^{m_p} · Σ_p + e^{m_s} · Σ_s)

(with o the normalised partial outputs, Σ the partial softmax sums and m the partial maxima), which is softmax
attention over the concatenation of prefix and suffix, up to floating-point rounding.

It plugs into transformers through the attention-function interface: ``ATTENTION_NAME`` is registered with
``AttentionInterface``, and while ``shared_prefix_attention(model)`` is active every attention layer calls
``attention`` with the ``SharedPrefixKV`` that the caller passes to the model's forward as ``shared_prefix=``. Keys
and values never go through a transformers ``Cache``: the prompt pass stores each layer's keys and values as the
prefix, and every decoding step writes its token's keys and values into a preallocated suffix buffer. Models whose
attention does not go through that interface, or that need more than plain causal attention (sliding windows,
logit soft-capping, attention sinks), are refused by ``supports`` and sampled the ordinary way.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

ATTENTION_NAME = "infertune_shared_prefix"
KWARG = "shared_prefix"


@dataclass
class SharedPrefixKV:
    """Keys and values of one decoding batch: one prefix per prompt, one growing suffix per sample (row).

    Rows belong to prompts through ``slots``: row r is sample ``slots[r] % n`` of prompt ``slots[r] // n``; rows are
    kept in slot order, and while no row has been dropped ``slots`` is None (row r is slot r).
    """

    n: int  # samples per prompt
    capacity: int  # suffix positions allocated per row
    prefix_valid: torch.Tensor | None = None  # [prompts, prefix_len] bool; None: no padding
    fused: bool = True  # use PyTorch's fused attention kernel where there is one
    prefix_k: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [prompts, kv_heads, len, head_dim]
    prefix_v: dict[int, torch.Tensor] = field(default_factory=dict)
    suffix_k: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [rows, kv_heads, capacity, head_dim]
    suffix_v: dict[int, torch.Tensor] = field(default_factory=dict)
    length: int = 0  # suffix positions filled before the current step
    slots: torch.Tensor | None = None
    prefilling: bool = True  # the next forward pass is the prompt pass
    _bias: torch.Tensor | None = field(default=None, repr=False)

    def start_decoding(self) -> None:
        """Called after the prompt pass: from now on each forward pass is one new token per row."""
        self.prefilling = False

    def advance(self) -> None:
        """Called after each decoding forward pass: that step's keys and values are now part of every suffix."""
        self.length += 1

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Drop finished rows: ``keep`` are the indices of the rows that go on, in order."""
        rows = self.rows
        if keep.numel() == rows:
            return
        for store in (self.suffix_k, self.suffix_v):
            for layer, buffer in store.items():
                # Only the filled positions are copied: a long buffer of a short suffix costs little to compact.
                kept = buffer.new_empty((keep.numel(), *buffer.shape[1:]))
                kept[:, :, : self.length] = buffer[:, :, : self.length].index_select(0, keep)
                store[layer] = kept
        slots = self.slots if self.slots is not None else torch.arange(rows, device=keep.device)
        self.slots = slots.index_select(0, keep)

    def bias(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The prefix's padding as an additive mask [prompts, 1, 1, L] (0, or -inf at padding), made once."""
        if self.prefix_valid is None:
            return None
        if self._bias is None or self._bias.dtype != dtype:
            zeros = torch.zeros(self.prefix_valid.shape, dtype=dtype, device=self.prefix_valid.device)
            self._bias = zeros.masked_fill(~self.prefix_valid, float("-inf"))[:, None, None, :]
        return self._bias

    @property
    def rows(self) -> int:
        if self.slots is not None:
            return int(self.slots.numel())
        first = next(iter(self.suffix_k.values()), None)
        if first is not None:
            return first.shape[0]
        return self.prompts * self.n

    @property
    def prompts(self) -> int:
        return next(iter(self.prefix_k.values())).shape[0]


def _fused_kernel():
    """PyTorch's fused CPU attention kernel that also returns the log-sum-exp, if this build has it (it is an
    internal operator, so its absence is expected on some builds and devices)."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def partial_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None,
                      scaling: float, fused: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over one part of the keys: (normalised output [B, H, Lq, D], log-sum-exp [B, H, Lq, 1]
    in float32 or wider).

    The fused kernel never materialises the scores (ten times faster than matmuls and a softmax on a 2,048-token
    prefix here); elsewhere the same is computed with matmuls."""
    kernel = _fused_kernel() if fused and query.device.type == "cpu" else None
    if kernel is not None:
        # The kernel assumes each head's vectors are contiguous (public SDPA checks this before choosing it): with
        # another last-dimension stride (a transposed or expanded view) it returned wrong numbers without an error
        # (torch 2.13), so such inputs are copied first.
        query, key, value = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value))
        out, lse = kernel(query, key, value, 0.0, False, attn_mask=bias, scale=scaling)[:2]
        return out, lse[..., None].to(torch.promote_types(lse.dtype, torch.float32))
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if bias is not None:
        scores = scores + bias
    lse = torch.logsumexp(scores.to(torch.promote_types(scores.dtype, torch.float32)), -1, keepdim=True)
    return torch.matmul(torch.exp(scores - lse).to(value.dtype), value), lse


def prefix_suffix_attention(query: torch.Tensor, prefix_k: torch.Tensor, prefix_v: torch.Tensor,
                            prefix_bias: torch.Tensor | None, suffix_k: torch.Tensor, suffix_v: torch.Tensor,
                            n: int, slots: torch.Tensor | None, scaling: float, fused: bool = True) -> torch.Tensor:
    """One decoding step's attention over a shared prefix and per-row suffixes, combined exactly.

    query: [rows, heads, 1, head_dim]; prefix_k/v: [prompts, kv_heads, L, head_dim]; prefix_bias: [prompts, 1, 1, L]
    additive (0, or -inf at padding) or None; suffix_k/v: [rows, kv_heads, S, head_dim] (the filled positions only,
    the current token's included). Returns [rows, 1, heads, head_dim], the layout transformers' attention
    functions return.
    """
    rows, heads, _, head_dim = query.shape
    prompts, kv_heads, _, _ = prefix_k.shape
    group = heads // kv_heads
    q = query.reshape(rows, kv_heads, group, head_dim)

    # Prefix: the queries of a prompt's n rows (each with its `group` heads) form one matrix per KV head.
    grid = q
    if slots is not None:  # some rows are gone: put the rest back at their slots, zeros elsewhere
        grid = q.new_zeros((prompts * n, kv_heads, group, head_dim)).index_copy_(0, slots, q)
    grid = grid.reshape(prompts, n, kv_heads, group, head_dim).transpose(1, 2)
    grid = grid.reshape(prompts, kv_heads, n * group, head_dim)
    p_out, p_lse = partial_attention(grid, prefix_k, prefix_v, prefix_bias, scaling, fused)

    def to_rows(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(prompts, kv_heads, n, group, t.shape[-1]).transpose(1, 2)
        t = t.reshape(prompts * n, kv_heads, group, t.shape[-1])
        return t if slots is None else t.index_select(0, slots)

    p_out, p_lse = to_rows(p_out), to_rows(p_lse)
    # Suffix: each row against its own generated tokens.
    s_out, s_lse = partial_attention(q, suffix_k, suffix_v, None, scaling, fused)
    # Combine the two softmaxes by their log-sum-exps (in float32 at least, whatever the model's dtype).
    lse = torch.logaddexp(p_lse, s_lse)
    wide = torch.promote_types(query.dtype, torch.float32)
    out = p_out.to(wide) * torch.exp(p_lse - lse).to(wide) + s_out.to(wide) * torch.exp(s_lse - lse).to(wide)
    return out.to(query.dtype).reshape(rows, 1, heads, head_dim)


def prompt_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, valid: torch.Tensor | None,
                     scaling: float) -> torch.Tensor:
    """Causal attention over left-padded prompts; padding is never attended to (a pad query attends to itself only,
    so that its output, which nothing reads, stays finite). Returns [batch, len, heads, head_dim]."""
    length, gqa = query.shape[2], key.shape[1] != query.shape[1]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if valid is None:  # no padding: the plain causal kernel
        out = sdpa(query, key, value, is_causal=True, scale=scaling, enable_gqa=gqa)
    else:
        mask = torch.ones((length, length), dtype=torch.bool, device=query.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=query.device)
        mask = mask & (valid[:, None, None, :] | eye)
        out = sdpa(query, key, value, attn_mask=mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous()


def attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, scaling=None,
              dropout: float = 0.0, **kwargs):
    """The function transformers calls in every attention layer (see ``AttentionInterface``)."""
    state: SharedPrefixKV | None = kwargs.get(KWARG)
    if state is None:
        raise RuntimeError(f"the {ATTENTION_NAME!r} attention needs `{KWARG}=SharedPrefixKV(...)` in the forward call")
    for unsupported in ("sliding_window", "softcap", "s_aux"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(f"shared-prefix attention does not support {unsupported} (HFSampler checks `supports` "
                             "and uses the copy path for such models)")
    layer = module.layer_idx
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    if state.prefilling:
        state.prefix_k[layer], state.prefix_v[layer] = key, value
        return prompt_attention(query, key, value, state.prefix_valid, scaling), None
    if query.shape[2] != 1:
        raise ValueError("shared-prefix decoding takes one new token per row and step")
    if layer not in state.suffix_k:
        shape = (key.shape[0], key.shape[1], state.capacity, key.shape[3])
        state.suffix_k[layer], state.suffix_v[layer] = key.new_empty(shape), value.new_empty(shape)
    if state.length >= state.capacity:
        raise RuntimeError(f"the suffix buffer holds {state.capacity} tokens")
    suffix_k, suffix_v = state.suffix_k[layer], state.suffix_v[layer]
    suffix_k[:, :, state.length] = key[:, :, 0]
    suffix_v[:, :, state.length] = value[:, :, 0]
    end = state.length + 1
    out = prefix_suffix_attention(query, state.prefix_k[layer], state.prefix_v[layer], state.bias(query.dtype),
                                  suffix_k[:, :, :end], suffix_v[:, :, :end], state.n, state.slots, scaling,
                                  state.fused)
    return out, None


def register() -> None:
    """Make ``ATTENTION_NAME`` known to transformers (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, attention)


def supports(model) -> str | None:
    """None when ``model`` can decode with shared-prefix attention, else the reason it cannot."""
    base = getattr(model, "get_base_model", lambda: model)()  # a peft model wraps the transformers one
    if not getattr(base, "_supports_attention_backend", False):
        return f"{type(base).__name__} does not route attention through transformers' attention interface"
    config = base.config
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return "sliding-window attention is not supported"
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return f"layer types {sorted(set(layer_types))} are not all full attention"
    for attr in ("attn_logit_softcapping", "attention_chunk_size"):
        if getattr(config, attr, None) is not None:
            return f"{attr} is not supported"
    layers = [m for m in base.modules() if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")]
    if not layers:
        return "its attention layers are not of the Llama family's form (layer_idx, num_key_value_groups)"
    return None


@contextmanager
def shared_prefix_attention(model) -> Iterator[None]:
    """Route the model's attention through ``attention`` for the duration (restores the previous choice after)."""
    register()
    config = getattr(model, "get_base_model", lambda: model)().config
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
