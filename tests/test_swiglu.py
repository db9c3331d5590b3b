"""The fused SiLU + Hadamard kernel (kernels/swiglu.py) against torch's own ops, under TRITON_INTERPRET=1.

16-bit inputs must give torch's bits exactly (every operation is rounded as torch rounds it). For fp32 the one
difference left on CPU is numpy's ``exp`` against torch's: a few ulps, bounded here; on a GPU both call CUDA's
``expf`` and ``tools/bench_swiglu.py`` checks the bits.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hyclora_hooks.kernels import swiglu  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def _inputs(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates over SiLU's whole range (deep negative, around 0, large) plus the adversarial values."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n, generator=gen) * torch.tensor([0.1, 3.0, 30.0]).repeat(n // 3 + 1)[:n]
    u = torch.randn(n, generator=gen) * 2
    special = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-30, -90.0, 88.0, 1e4, -1e4])
    k = min(n, special.numel())
    g[:k] = special[:k]
    u[-k:] = special[:k]
    return g.to(dtype), u.to(dtype)


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise: equal bits, or both NaN (a NaN's payload is not specified)."""
    bits = {2: torch.int16, 4: torch.int32}[a.element_size()]
    return (a.view(bits) == b.view(bits)) | (torch.isnan(a) & torch.isnan(b))


@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("out_dtype", [None, FP32])
@pytest.mark.parametrize("n", [1, 2047, 2048 * 3 + 5])
def test_16_bit_kernel_gives_torchs_bits(dtype, out_dtype, n):
    g, u = _inputs(n, dtype)
    s, p = swiglu.silu_mul(g, u, out_dtype, backend="triton")
    s_ref, p_ref = swiglu.silu_mul_ref(g, u, out_dtype)
    assert s.dtype == s_ref.dtype and p.dtype == p_ref.dtype and p.shape == p_ref.shape
    assert _same(s, s_ref).all() and _same(p, p_ref).all()


@pytest.mark.parametrize("out_dtype", [None, FP32])
def test_fp32_kernel_within_a_few_ulps_of_torch_on_cpu(out_dtype):
    g, u = _inputs(5000, FP32, seed=1)
    s, p = swiglu.silu_mul(g, u, out_dtype, backend="triton")
    s_ref, p_ref = swiglu.silu_mul_ref(g, u, out_dtype)
    for got, ref in ((s, s_ref), (p, p_ref)):
        assert torch.equal(torch.isnan(got), torch.isnan(ref))
        fin = torch.isfinite(ref)
        assert torch.equal(got[~fin & ~torch.isnan(ref)], ref[~fin & ~torch.isnan(ref)])  # infinities exact
        ulp = torch.finfo(FP32).eps * ref[fin].abs().clamp_min(torch.finfo(FP32).tiny)
        assert ((got[fin] - ref[fin]).abs() <= 4 * ulp).all()


def test_shapes_and_layouts_the_kernel_does_not_take_fall_back_to_torch():
    g, u = _inputs(64, BF16)
    assert swiglu.fusable(g, u, None) and swiglu.fusable(g, u, FP32)
    assert not swiglu.fusable(g, u.float(), None)  # mixed dtypes: torch promotes
    assert not swiglu.fusable(g.view(8, 8).t(), u.view(8, 8), None)  # not contiguous
    assert not swiglu.fusable(g, u[:32], None)  # broadcasting
    assert not swiglu.fusable(g.float(), u.float(), BF16)  # a narrowing cast rounds twice
    s, p = swiglu.silu_mul(g.view(8, 8).t(), u.view(8, 8), FP32, backend="triton")  # the reference, same values
    s_ref, p_ref = swiglu.silu_mul_ref(g.view(8, 8).t(), u.view(8, 8), FP32)
    assert _same(s, s_ref).all() and _same(p, p_ref).all()


def test_empty_input():
    g = torch.empty(0, 4, dtype=BF16)
    s, p = swiglu.silu_mul(g, g, FP32, backend="triton")
    assert s.shape == (0, 4) and p.shape == (0, 4) and p.dtype == FP32
