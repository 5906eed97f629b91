"""Linear layers for decoding steps: the weight on the left of the product when a step has few rows.

A decoding step multiplies every weight by a thin matrix (one row per sample, 32 for n = 32). ``F.linear`` computes
x·Wᵀ, a product with 32 rows, for which the CPU's BLAS picks a blocking that leaves most of the machine idle:
measured on this project's 2-core Xeon (AMX, AVX-512) at 32 rows, SmolLM2's MLP projections took 0.40-0.56 ms as
x·Wᵀ against 0.25-0.26 ms as W·xᵀ, and its output head 16.4 against 13.7 ms (benchmarks/sampling.py has the
whole-sampler figures). The two are the same dot products; only the order of the float32 additions inside each can
differ, as it does between any two BLAS blockings (the sampler's log-prob tests hold to 1e-5 either way).

``thin_linears(model)`` routes the model's ``nn.Linear`` layers through ``thin_linear`` for the duration of a
``with`` block (instance ``forward`` attributes, removed again after), so nothing changes outside the sampler and
nothing global is touched. Inputs with more rows than ``max_rows`` (a prompt pass) and non-float32 weights keep
``F.linear``, and so do small layers (fewer than ``MIN_WEIGHT`` weights): for the embedded default's tiny model
(128 x 384 at most) the extra transpose and copy cost more than the product saves (its sampler took 0.66 s against
0.58 s with every layer routed), and leaving them alone keeps its samples bit for bit what they were.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

MAX_ROWS = 64  # above this the many-row BLAS path is as fast (or faster) in both orientations
MIN_WEIGHT = 1 << 16  # smaller layers keep F.linear (SmolLM2's smallest, 576 x 192, is above; the tiny model's below)


def thin_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                max_rows: int = MAX_ROWS) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, computed as (W·xᵀ)ᵀ when x has at most ``max_rows`` rows (all leading
    dimensions together) and everything is float32 on the CPU."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if (rows == 0 or rows > max_rows or x.device.type != "cpu" or x.dtype != torch.float32
            or weight.dtype != torch.float32):
        return torch.nn.functional.linear(x, weight, bias)
    out = torch.mm(weight, x.reshape(rows, x.shape[-1]).t()).t()
    if bias is not None:
        out = out + bias
    return out.contiguous().reshape(*x.shape[:-1], weight.shape[0])


@contextmanager
def thin_linears(model: torch.nn.Module, max_rows: int = MAX_ROWS, min_weight: int = MIN_WEIGHT) -> Iterator[int]:
    """Every ``nn.Linear`` of ``model`` with at least ``min_weight`` weights computes with ``thin_linear`` inside the
    block; yields how many layers."""
    patched = []
    for module in model.modules() if max_rows > 0 else ():
        if (type(module) is torch.nn.Linear and module.weight.numel() >= min_weight
                and "forward" not in vars(module)):
            module.forward = _forward_of(module, max_rows)
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


def _forward_of(module: torch.nn.Linear, max_rows: int):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return thin_linear(x, module.weight, module.bias, max_rows)

    return forward
