"""The fused RMSNorm tail (kernels/norm_tail.py, lineage.NormTail) against torch's own ops, under TRITON_INTERPRET=1.

The kernel must give torch's bits exactly: every operation is one fp32 multiply rounded as torch rounds it. On a GPU
``tools/check_norm_tail.py`` checks the same and times both.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import hyclora_hooks as hyclora  # noqa: E402
from hyclora_hooks import engine, lineage, load_policy  # noqa: E402
from hyclora_hooks.kernels import norm_tail as nt  # noqa: E402

from conftest import step  # noqa: E402
from test_inter import ANY, ANY_IDS, KEEP_POLICIES, padded  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def _inputs(rows: tuple, n: int, half: torch.dtype, seed: int = 0):
    """An RMSNorm's fp32 input and rstd (with the adversarial values) and a weight in ``half``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*rows, n, generator=gen) * 4
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e38, -3e38, 1e-40, 65519.0])
    k = min(x.numel(), special.numel())
    x.view(-1)[:k] = special[:k]
    rstd = torch.rand(*rows, 1, generator=gen) * 3 + 0.05
    w = (torch.randn(n, generator=gen) * 2).to(half)
    w[:3] = torch.tensor([0.0, -1.0, 300.0]).to(half)[: min(3, n)]
    return x, rstd, w


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bits, or both NaN (a NaN's payload is not specified)."""
    return bool(((a.view(torch.int32) == b.view(torch.int32)) | (torch.isnan(a) & torch.isnan(b))).all())


@pytest.mark.parametrize("half", [BF16, FP16])
@pytest.mark.parametrize("rows,n", [((1,), 1), ((3, 5), 1000), ((2, 7), 1024 + 3)])
def test_kernel_gives_torchs_bits(half, rows, n):
    x, rstd, w = _inputs(rows, n, half)
    got = nt.norm_tail(x, rstd, w, half, FP32, backend="triton")
    want = nt.norm_tail_ref(x, rstd, w, half, FP32)
    assert got.dtype == FP32 and got.shape == want.shape and got.is_contiguous()
    assert _same(got, want)
    # the reference is the recipe's op-by-op value: Hugging Face's ``weight * (x * rstd).to(bf16)``, cast to fp32
    assert _same(want, (w * (x * rstd).to(half)).float())
    # left in ``half`` (a LoRA branch node's 16-bit input, NOTE [LoRA branch] rule 5): the same values, unwidened
    narrow = nt.norm_tail(x, rstd, w, half, half, backend="triton")
    assert narrow.dtype == half and narrow.shape == want.shape and narrow.is_contiguous()
    assert _same(narrow.float(), want) and _same(nt.norm_tail_ref(x, rstd, w, half, half).float(), want)


def test_operands_the_kernel_does_not_take_fall_back_to_torch():
    x, rstd, w = _inputs((4,), 64, BF16)
    assert nt.fusable(x, rstd, w, BF16, FP32)
    assert not nt.fusable(x, rstd, w.float(), BF16, FP32)  # the weight is not in the narrow dtype
    assert nt.fusable(x, rstd, w, BF16, BF16)  # left in bf16 (rule 5 of NOTE [LoRA branch])
    assert not nt.fusable(x, rstd, w, BF16, FP16)  # neither the weight's dtype nor fp32
    assert not nt.fusable(x.bfloat16(), rstd, w, BF16, FP32)  # x is not fp32
    assert not nt.fusable(x, rstd.view(1, 4), w, BF16, FP32)  # rstd is not per row
    assert not nt.fusable(x.t().contiguous().t(), rstd, w, BF16, FP32)  # not contiguous
    assert not nt.fusable(x, rstd, w[:32], BF16, FP32)
    xt = x.t().contiguous().t()
    assert _same(nt.norm_tail(xt, rstd, w, BF16, FP32, backend="triton"), nt.norm_tail_ref(xt, rstd, w, BF16, FP32))
    assert nt.norm_tail(torch.empty(0, 8), torch.empty(0, 1), w[:8], BF16, FP32, backend="triton").shape == (0, 8)


def _tail_nodes(order: int = 0, wide: torch.dtype = FP32):
    x, rstd, w = _inputs((2, 6), 32, BF16)
    xa, ra = lineage.Const(x), lineage.Const(rstd)
    prod = lineage.Replay(torch.mul, "mul", (xa, ra) if order in (0, 2) else (ra, xa), {})
    h = lineage.Replay(torch.Tensor.to, "to", (prod, BF16), {})
    wn = lineage.Const(torch.nn.Parameter(w, requires_grad=False))
    top = lineage.Replay(torch.mul, "mul", (wn, h) if order in (0, 1) else (h, wn), {})
    cast = lineage.Replay(torch.Tensor.to, "to", (top, wide), {})
    return lineage.Replay(torch.Tensor.view, "view", (cast, (-1, 32)), {})  # as F.linear's 2-D view


@pytest.mark.parametrize("order", [0, 1, 2])
def test_fuse_norm_tail_finds_the_pattern_under_views(order, monkeypatch):
    node = _tail_nodes(order)
    fused = lineage.fuse_norm_tail(node)
    assert fused is not node and isinstance(fused.args[0], lineage.NormTail)
    want = lineage.evaluate(node)
    assert _same(lineage.evaluate(fused), want)
    monkeypatch.setattr(nt, "use_triton", lambda t: True)  # the kernel itself, under the interpreter
    calls = []
    real = nt.norm_tail_triton
    monkeypatch.setattr(nt, "norm_tail_triton", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _same(lineage.evaluate(fused), want) and calls == [1]
    assert lineage.recipe_key(fused) is not None and lineage.recipe_key(fused) != lineage.recipe_key(node)


def test_fuse_norm_tail_leaves_other_expressions():
    bare = _tail_nodes().args[0].args[0]  # the mul without the widening cast
    assert lineage.fuse_norm_tail(bare) is bare
    node = _tail_nodes()
    top = node.args[0].args[0]
    top.args = (lineage.Const(torch.ones(32)),) + top.args[1:]  # a tensor that is no parameter is fine too...
    assert isinstance(lineage.fuse_norm_tail(node).args[0], lineage.NormTail)
    top.args = (2.0,) + top.args[1:]  # ...but a number is no weight
    assert lineage.fuse_norm_tail(node) is node


def _tail_recipes(model, batch, policy) -> int:
    """How many recipes of one compressed step hold a NormTail (the step decides every pack: a replayed one would
    make its recipes from the plan's templates)."""
    made = []
    real = engine.Compressor._recipe_entry

    def spy(self, t, site, node, leaves):
        made.append(node)
        return real(self, t, site, node, leaves)

    engine.Compressor._recipe_entry = spy
    try:
        step(model, batch, lambda: hyclora.compress(policy, replay=False))
    finally:
        engine.Compressor._recipe_entry = real

    def has(n) -> bool:
        return isinstance(n, lineage.NormTail) or (
            isinstance(n, lineage.Replay) and any(has(a) for a in n.args if isinstance(a, lineage.Node)))

    return sum(map(has, made))


@pytest.mark.parametrize("name,attn,dtype", [a for a in ANY if a[0] == "llama" and a[2] == BF16],
                         ids=[i for a, i in zip(ANY, ANY_IDS) if a[0] == "llama" and a[2] == BF16])
def test_a_llama_step_rebuilds_lora_inputs_with_the_kernel_bit_for_bit(name, attn, dtype, monkeypatch):
    """Lossless recipes with the kernel forced (under the interpreter): exact autograd's gradients, bit for bit,
    and the LoRA inputs after each RMSNorm (two a layer, less the first: it normalises the embeddings, which no
    recipe reaches, so its output is stored itself) went through it."""
    model, batch, loss0, exact = padded(name, attn, dtype)
    policy = KEEP_POLICIES["one-rule"]
    norms = 2 * model.config.num_hidden_layers - 1
    assert _tail_recipes(model, batch, policy) == norms
    monkeypatch.setattr(nt, "use_triton", lambda t: True)
    calls = []
    real = nt.norm_tail_triton
    monkeypatch.setattr(nt, "norm_tail_triton", lambda *a, **k: calls.append(1) or real(*a, **k))
    loss, grads, _ = step(model, batch, lambda: hyclora.compress(policy))
    assert calls and torch.equal(loss, loss0) and torch.equal(grads, exact)
    assert _tail_recipes(model, batch, load_policy("intra_inter")) == norms
