"""The backward's widening passes (kernels/widen.py) under TRITON_INTERPRET=1: torch's bits for a cast to fp32 and
for mul/add/sub written into fp32, and a compressed step whose recipes take them gives the gradients it gives
without them, bit for bit."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hyclora_hooks import lineage  # noqa: E402
from hyclora_hooks.kernels import widen  # noqa: E402
from hyclora_hooks.models import add_lora, random_batch, tiny_llama  # noqa: E402
from tests.test_inter import replayed_steps  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def _pair(dtype: torch.dtype, n: int = 5000, specials: bool = False):
    gen = torch.Generator().manual_seed(n)
    a, b = torch.randn(2, n, generator=gen) * torch.logspace(-3, 3, n)
    if specials:  # overflow, inf - inf, inf * 0, NaN, signed zeros
        a[:6] = torch.tensor([6e4, float("inf"), float("inf"), float("nan"), -0.0, 3e38])
        b[:6] = torch.tensor([6e4, float("inf"), 0.0, 1.0, 0.0, 3e38])
    return a.to(dtype), b.to(dtype)


@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("op", ["cast", "mul", "add", "sub"])
@pytest.mark.parametrize("specials", [False, True])
def test_kernel_gives_torchs_bits(dtype, op, specials):
    a, b = _pair(dtype, specials=specials)  # 5000 elements: two programs, the second cut by the mask
    if op == "cast":
        got, want = widen._run(-1, a, a), a.to(FP32)
    else:
        got = widen._run(widen.OPS[op], a, b)
        want = getattr(torch, op)(a, b, out=torch.empty(0, dtype=FP32))
    assert got.dtype == FP32 and got.shape == a.shape
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(torch.signbit(got[~got.isnan()]), torch.signbit(want[~want.isnan()]))


def test_fits_only_what_the_kernel_takes(monkeypatch):
    a, b = _pair(BF16, 64)
    assert not widen.fits(FP32, a)  # CPU: the reference path
    monkeypatch.setattr(widen, "use_triton", lambda t: True)
    assert widen.fits(FP32, a) and widen.fits(FP32, a, b)
    assert not widen.fits(BF16, a)  # not a widening to fp32
    assert not widen.fits(FP32, a.float())  # fp32 input
    assert not widen.fits(FP32, a, b[:32])  # broadcasting
    assert not widen.fits(FP32, a, b.half())  # mixed dtypes
    assert not widen.fits(FP32, a.view(8, 8).t())  # not contiguous
    assert not widen.fits(FP32, a, 2.0)  # a scalar operand
    assert not widen.fits(FP32, "not a tensor")


def test_recipes_take_the_kernel_for_casts_and_products(monkeypatch):
    """A replayed cast of a 16-bit tensor and ``(a * b).to(fp32)`` (NOTE [Casts into outputs]) run the kernel where
    it fits, to the op-by-op values; anything else replays as before."""
    monkeypatch.setattr(widen, "use_triton", lambda t: True)
    calls = []
    real = widen._run
    monkeypatch.setattr(widen, "_run", lambda op, a, b: calls.append(op) or real(op, a, b))
    a, b = (x.view(50, 100) for x in _pair(BF16))
    ca, cb = lineage.Const(a), lineage.Const(b)
    cast = lineage.Replay(torch.Tensor.to, "to", (ca, FP32), {})
    assert torch.equal(lineage.evaluate(cast), a.float()) and calls == [-1]
    prod = lineage.Replay(torch.mul, "mul", (ca, cb), {})
    assert torch.equal(lineage.evaluate(lineage.Replay(torch.Tensor.float, "float", (prod,), {})), (a * b).float())
    assert calls == [-1, widen.OPS["mul"]]
    scaled = lineage.Replay(torch.mul, "mul", (ca, 3.0), {})  # a scalar operand: ATen's out= path
    assert torch.equal(lineage.evaluate(lineage.Replay(torch.Tensor.to, "to", (scaled, FP32), {})),
                       (a * 3.0).float())
    narrow = lineage.Replay(torch.Tensor.to, "to", (lineage.Const(a.float()), BF16), {})  # narrowing: torch's
    assert torch.equal(lineage.evaluate(narrow), a) and len(calls) == 2


@pytest.mark.parametrize("preset", ["intra_inter", "intra_inter_full_fuse"])
def test_step_with_the_kernel_gives_the_same_gradients(preset, monkeypatch):
    """o_proj's fp32 LoRA input and the lm_head replay's fp32 logits (where kernels/log_softmax.py does not read them
    as they are: off CUDA here) are rebuilt by the kernel when it is forced on: the gradients equal those of the same
    steps without it. (down_proj's fp32 LoRA input comes from the SwiGLU kernel in every ``inter`` policy.)"""
    model, twin = (add_lora(tiny_llama(attn="sdpa", dtype=BF16)) for _ in range(2))  # replay plans are per model
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    batch = random_batch(model.config.vocab_size, batch=2, seq=32)
    without = [g for _, g in replayed_steps(twin, batch, preset)]
    monkeypatch.setattr(widen, "use_triton", lambda t: True)
    calls = []
    real = widen._run
    monkeypatch.setattr(widen, "_run", lambda op, a, b: calls.append(op) or real(op, a, b))
    for step, grads in replayed_steps(model, batch, preset):
        # casts (o_proj's input, the logits) and sums (a residual stream's fp32 copy)
        assert {-1, 1} == set(calls), (step, calls)
        assert torch.equal(grads, without[step]), step
        calls.clear()
