"""One decoding step of a Llama-family model, computed from the model's own modules without its forward pass.

A decoding step of n = 32 samples multiplies a 32-row matrix by every weight. At that row count this machine's BLAS
runs ``W · xᵀ`` (the weight as the left, many-row operand) markedly faster than ``F.linear``'s ``x · Wᵀ`` (SmolLM2's
linear layers at 32 rows: about 92 against 115 ms per step here), and transformers' forward adds Python work per
step (mask and cache handling, keyword plumbing, output objects) that a step over the shared-prefix state does not
need. This module computes the step itself from the model's embedding, rotary embedding, activation, norm weights and
linear weights, read at every step (so training between calls is always seen), with activations kept as columns so
that every product but the output head's is W · X, and attention through ``shared_prefix.attention``. Nothing of the
model is patched or replaced: other users of the model see no difference.

Only models whose layers have exactly the Llama form are taken (``unsupported`` says why not), and only steps of at
most ``THIN_ROWS`` rows; prefill, wider steps and every other model keep transformers' forward pass.
"""

from __future__ import annotations

import torch

THIN_ROWS = 64  # decoding steps of at most this many rows are computed here; larger ones by the forward pass
MODEL_TYPES = ("llama",)  # architectures whose decoder layer is exactly the form computed here


def unsupported(model) -> str | None:
    """None when ``decode_step`` computes this model's step exactly, else the reason it does not."""
    base = getattr(model, "get_base_model", lambda: model)()
    if base is not model:  # peft: adapters and prompt tuning change what the forward pass computes
        return f"a wrapped model ({type(model).__name__}): its forward pass is not the Llama one"
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in MODEL_TYPES:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {MODEL_TYPES}"
    inner = getattr(base, "model", None)
    parts = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or any(not hasattr(inner, p) for p in parts) or not hasattr(base, "lm_head"):
        return "the model lacks the Llama layout (model.embed_tokens, layers, norm, rotary_emb and lm_head)"
    if len(inner.layers) != getattr(config, "num_hidden_layers", len(inner.layers)):
        return "the model has another number of layers than its config's num_hidden_layers"
    # The step calls none of the modules' forward methods, so anything hooked into them would be skipped.
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_hf_hook")
    if any(getattr(m, h, None) for m in base.modules() for h in hooks) or \
            torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
        return "forward hooks are registered (the step would skip them)"
    if any(p.device.type == "meta" for p in base.parameters()):
        return "some weights are offloaded (meta tensors)"
    linears = [base.lm_head]
    for layer in inner.layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        names = ("q_proj", "k_proj", "v_proj", "o_proj")
        if attn is None or mlp is None or any(not hasattr(attn, p) for p in names):
            return "a decoder layer lacks self_attn.{q,k,v,o}_proj or mlp"
        linears += [getattr(attn, p) for p in names]
        linears += [getattr(mlp, p, None) for p in ("gate_proj", "up_proj", "down_proj")]
    # Exactly nn.Linear: adapters (LoRA) and quantised layers compute something else from their weights.
    if any(type(m) is not torch.nn.Linear for m in linears):
        return "a linear layer is not a plain torch.nn.Linear (an adapter or a quantised layer)"
    norms = [inner.norm]
    norms += [n for layer in inner.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
    if any(type(n).__name__ != "LlamaRMSNorm" for n in norms):
        return "a norm is not LlamaRMSNorm"
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        return "pretraining_tp > 1 is not supported"
    return None


def _rms_norm(columns: torch.Tensor, norm) -> torch.Tensor:
    """``LlamaRMSNorm`` of [hidden, rows] activations (normalised over dim 0), in float32 as it computes."""
    wide = columns.to(torch.float32)
    wide = wide * torch.rsqrt(wide.pow(2).mean(0, keepdim=True) + norm.variance_epsilon)
    return norm.weight[:, None] * wide.to(columns.dtype)


def _project(layer: torch.nn.Linear, columns: torch.Tensor) -> torch.Tensor:
    """``layer`` applied to [in, rows] activations, giving [out, rows]: W · X, with no transposed copy of anything."""
    out = torch.mm(layer.weight, columns)
    return out if layer.bias is None else out + layer.bias[:, None]


def _heads(columns: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[heads · head_dim, rows] -> [rows, heads, 1, head_dim], the layout of transformers' attention functions."""
    rows = columns.shape[1]
    return columns.t().contiguous().view(rows, -1, 1, head_dim)


def decode_step(model, tokens: torch.Tensor, positions: torch.Tensor, state) -> torch.Tensor:
    """Logits [rows, vocab] after one new token per row; writes the step's keys and values into ``state`` (a
    ``shared_prefix.SharedPrefixKV`` after its prompt pass), as the model's forward pass with shared-prefix
    attention does.

    Activations are kept as columns ([hidden, rows]) so that every product of the layers is a weight times a thin
    matrix and nothing is transposed into a copy but the small per-head tensors of attention.
    """
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from infertune.models.shared_prefix import KWARG, attention

    base = getattr(model, "get_base_model", lambda: model)()
    inner = base.model
    embedded = inner.embed_tokens(tokens)  # [rows, hidden]
    cos, sin = inner.rotary_emb(embedded[:, None, :], positions[:, None])  # [rows, 1, head_dim]
    hidden = embedded.t().contiguous()  # [hidden, rows]
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        x = _rms_norm(hidden, layer.input_layernorm)
        q = _heads(_project(attn.q_proj, x), attn.head_dim)
        k = _heads(_project(attn.k_proj, x), attn.head_dim)
        v = _heads(_project(attn.v_proj, x), attn.head_dim)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        out, _ = attention(attn, q, k, v, None, scaling=attn.scaling, **{KWARG: state})  # [rows, 1, heads, dim]
        hidden = hidden + _project(attn.o_proj, out.reshape(out.shape[0], -1).t())
        x = _rms_norm(hidden, layer.post_attention_layernorm)
        hidden = hidden + _project(mlp.down_proj, mlp.act_fn(_project(mlp.gate_proj, x)) * _project(mlp.up_proj, x))
    # The output head as x · Wᵀ: its result is needed as [rows, vocab], and at this size the two orders ran alike
    # here once the transposed result's copy is counted (about 29.7 against 29.9 ms per 32-row step for SmolLM2).
    return torch.nn.functional.linear(_rms_norm(hidden, inner.norm).t(), base.lm_head.weight, base.lm_head.bias)
