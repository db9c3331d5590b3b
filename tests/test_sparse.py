"""The ``sparse`` codec for eager attention maps: kept entries exact, dropped ones bounded, compact indices."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hyclora_hooks.codecs import make_codec
from hyclora_hooks.kernels.sparse import column_dtype


def _bits(t):
    return t.view({2: torch.int16, 4: torch.int32}[t.element_size()])


@settings(max_examples=80, deadline=None)
@given(rows=st.integers(1, 6), length=st.integers(1, 300), ratio=st.sampled_from([0.01, 0.05, 0.3, 1.0]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), nonfinite=st.booleans(),
       seed=st.integers(0, 999))
def test_sparse_bound_and_exact_size(rows, length, ratio, dtype, nonfinite, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(rows, length, generator=gen) * 3, dim=-1).to(dtype)
    if nonfinite:
        x[0, seed % length] = float("nan")
    codec = make_codec("sparse", {"ratio": ratio})
    s = codec.encode(x)
    y = codec.decode(s)
    k = max(1, min(length, math.ceil(ratio * length - 1e-9)))
    w = torch.empty(0, dtype=column_dtype(length)).element_size()
    e = x.element_size()
    assert codec.nbytes(s) == rows * k * (e + w) + int(nonfinite) * (8 + e)
    assert w == (1 if length <= 256 else 2)  # compact offsets, not 8-byte COO
    kept = y != 0
    fin = torch.isfinite(x)
    assert torch.equal(_bits(y[~fin]), _bits(x[~fin]))  # NaN back at its place
    assert torch.equal(y[kept & fin], x[kept & fin])  # kept entries exact
    # every dropped entry is no larger than its row's smallest kept magnitude
    xa = torch.where(fin, x.float().abs(), torch.zeros(()))
    smallest_kept = torch.where(kept & fin, xa, torch.full((), float("inf"))).amin(-1, keepdim=True)
    assert (torch.where(kept | ~fin, torch.zeros(()), xa) <= smallest_kept).all()
    assert torch.equal(_bits(codec.decode(s)), _bits(y))  # decode is repeatable


def test_sparse_on_4d_attention_map_with_long_rows():
    x = torch.softmax(torch.randn(1, 2, 3, 400), -1)
    codec = make_codec("sparse", {"ratio": 0.05})
    s = codec.encode(x)
    assert s.column.dtype == torch.int16 and s.value.shape == (6, 20)
    y = codec.decode(s)
    assert y.shape == x.shape and ((y != 0).sum(-1) == 20).all()
