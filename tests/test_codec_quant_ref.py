"""The reference quantizer behind the ``quant`` codec: layout, exact size, error bound, edge values."""

from __future__ import annotations

import math

import pytest
import torch

from hyclora_hooks.codecs import make_codec
from hyclora_hooks.kernels.quant import dequantize_ref, pack_codes, quantize_ref, unpack_codes


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pack_round_trip_and_density(bits):
    codes = torch.randint(0, 2**bits, (7, 64), dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.shape == (7, 64 * bits // 8)
    assert torch.equal(unpack_codes(packed, bits), codes)
    if bits == 2:  # four codes a byte, low bits first
        assert packed[0, 0].item() == int(codes[0, 0] | codes[0, 1] << 2 | codes[0, 2] << 4 | codes[0, 3] << 6)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("shape", [(6, 42), (123,), (3, 5, 431), (2, 64)])
def test_error_bound_and_exact_size(shape, bits, dtype, symmetric):
    g = 64
    x = (torch.randn(shape) * 3 + 1).to(dtype)
    codec = make_codec("quant", {"bits": bits, "group_size": g, "symmetric": symmetric})
    payload = codec.encode(x)
    y = codec.decode(payload)
    assert y.shape == x.shape and y.dtype == x.dtype
    n = x.numel()
    ngroups = math.ceil(n / g)
    assert codec.nbytes(payload) == ngroups * g * bits // 8 + 2 * ngroups * (1 if symmetric else 2)
    step = payload.scale.float().repeat_interleave(g)[:n].view(shape)
    # bound: half a step in fp32, plus one rounding of the result to the output dtype
    out_eps = {torch.float32: 0.0, torch.bfloat16: 2**-8, torch.float16: 2**-11}[dtype]
    err = (y.float() - x.float()).abs()
    assert (err <= step / 2 * (1 + 1e-5) + y.float().abs() * out_eps + 1e-30).all()
    assert torch.equal(codec.decode(payload), y)  # decode is repeatable


def test_non_finite_values_stay_put_and_do_not_spread():
    x = torch.randn(4, 128)
    x[0, 3], x[2, 70], x[3, 0] = float("nan"), float("inf"), float("-inf")
    q = quantize_ref(x, 4, 64)
    y = dequantize_ref(q)
    assert torch.isnan(y[0, 3]) and y[2, 70] == float("inf") and y[3, 0] == float("-inf")
    finite = torch.isfinite(x)
    assert torch.isfinite(y[finite]).all()
    clean = x.clone()
    clean[~finite] = 0
    assert (y[finite] - clean[finite]).abs().max() < 0.3  # 4-bit step over a ~[-4, 4] range, halved


@pytest.mark.parametrize("fill", [0.0, 7.25, 1e-40, 3e38])
def test_constant_zero_denormal_and_huge_groups(fill):
    x = torch.full((2, 64), fill)
    y = dequantize_ref(quantize_ref(x, 2, 64))
    assert torch.allclose(y, x, rtol=2**-7, atol=1e-38)


def test_single_huge_outlier_group_keeps_the_outlier():
    x = torch.randn(64) * 0.01
    x[17] = 1e4
    y = dequantize_ref(quantize_ref(x, 8, 64))
    assert abs(y[17].item() - 1e4) <= 1e4 / 255
