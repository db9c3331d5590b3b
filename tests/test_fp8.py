"""The ``fp8`` codec (e4m3, bf16 scale per group): error bound, exact size, non-finite values."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hyclora_hooks.codecs import make_codec

OUT_EPS = {torch.float32: 0.0, torch.bfloat16: 2**-8, torch.float16: 2**-11}
OUT_TINY = {torch.float32: 0.0, torch.bfloat16: 2.0**-134, torch.float16: 2.0**-25}


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 500), g=st.sampled_from([1, 16, 100, 128]),
       dtype=st.sampled_from(list(OUT_EPS)), kind=st.sampled_from(["normal", "zeros", "huge", "tiny", "nonfinite"]),
       seed=st.integers(0, 999))
def test_fp8_bound_and_exact_size(n, g, dtype, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen) * 4
    if kind == "zeros":
        x.zero_()
    elif kind == "huge":
        x[seed % n] = 6e4 if dtype == torch.float16 else 1e30
    elif kind == "tiny":
        x = x * 1e-6
    elif kind == "nonfinite":
        x[seed % n] = float("inf")
    x = x.to(dtype)
    codec = make_codec("fp8", {"group_size": g})
    q = codec.encode(x)
    y = codec.decode(q)
    fin = torch.isfinite(x)
    m = int((~fin).sum())
    assert codec.nbytes(q) == math.ceil(n / g) * (g + 2) + m * (8 + x.element_size())
    assert torch.equal(y[~fin], x[~fin])
    scale = q.scale.float().repeat_interleave(g)[:n]
    xf, yf = x.float()[fin], y.float()[fin]
    s = scale[fin]
    # e4m3: half an ulp is 2^-4 relative (normal) or 2^-10 * scale (subnormal), plus fp32 slack 2^-20 relative
    # of the group's range (448 * scale), plus one rounding to the output dtype
    bound = torch.maximum(xf.abs() * 2**-4, s * 2**-10) + s * 448 * 2**-20 + yf.abs() * OUT_EPS[dtype] + OUT_TINY[dtype]
    assert ((yf - xf).abs() <= bound).all()
