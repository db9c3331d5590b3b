"""The LoRA part carried through rotary embedding (NOTE [RoPE part] in lineage.py, kernels/rope_part.py): the kernel
against its reference under TRITON_INTERPRET=1, the reference against the op-by-op replay it replaces, the
pattern that finds it, and a compressed step that runs the kernel end to end."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hyclora_hooks import lineage  # noqa: E402
from hyclora_hooks.kernels import rope_part as rp  # noqa: E402
from hyclora_hooks.models import add_lora, random_batch, tiny_llama  # noqa: E402
from hyclora_hooks.policy import Policy, Rule  # noqa: E402
from tests.conftest import cosine, zero_frozen  # noqa: E402
from tests.test_inter import replayed_steps, seeded_step  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def _inputs(b: int, t: int, h: int, d: int, r: int, dtype: torch.dtype, cos_batch: int = 1, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(b * t, r, generator=gen).to(dtype)
    w = (torch.randn(h * d, r, generator=gen) * 0.3).to(dtype)
    angle = torch.randn(cos_batch, 1, t, d, generator=gen) * 3
    return p, w, angle.cos().to(dtype), angle.sin().to(dtype)


def _layout(x: torch.Tensor) -> list:
    """The strides of the dims that have more than one element."""
    return [st for n, st in zip(x.shape, x.stride()) if n > 1]


_CASES = [  # (B, T, H, D), r, dtype, cos batch
    ((2, 24, 3, 32), 16, BF16, 1),
    ((1, 70, 2, 64), 8, FP32, 1),  # T not a multiple of the 64-row tile; r under the dot's 16
    ((2, 9, 2, 32), 6, FP16, 2),  # cos and sin per batch row
    ((1, 130, 1, 128), 16, BF16, 1),
]


@pytest.mark.parametrize("shape,r,dtype,cos_batch", _CASES)
def test_kernel_matches_reference(shape, r, dtype, cos_batch):
    p, w, cos, sin = _inputs(*shape, r, dtype, cos_batch)
    got = rp.rope_part(p, w, cos, sin, shape, backend="triton")
    ref = rp.rope_part_ref(p, w, cos, sin, shape)
    assert got.dtype == ref.dtype == dtype and got.shape == ref.shape == (shape[0], shape[2], shape[1], shape[3])
    assert _layout(got) == _layout(ref)  # (B, T, H, D) memory, as the projection's output viewed as heads
    # fp32 sums in another order, then one rounding: at most one ulp of the output dtype apart
    eps = torch.finfo(dtype).eps
    tol = eps * ref.float().abs().clamp_min(1.0) * 1.01
    if dtype == FP32:  # the oracle rounds in fp32 too: both sides err by up to (r + 3) roundings of the terms' size
        a = (p.double().abs() @ w.double().abs().T).view(shape).transpose(1, 2)  # bounds |x·w| term by term
        half = shape[3] // 2
        size = a * cos.double().abs() + torch.cat((a[..., half:], a[..., :half]), dim=-1) * sin.double().abs()
        tol = tol + 2 * (r + 3) * eps * size.float()
    assert ((got.float() - ref.float()).abs() <= tol).all()


@pytest.mark.parametrize("shape,r,dtype,cos_batch", _CASES)
def test_reference_is_the_op_by_op_value(shape, r, dtype, cos_batch):
    p, w, cos, sin = _inputs(*shape, r, dtype, cos_batch)
    ref = rp.rope_part_ref(p, w, cos, sin, shape)
    exact = rp.rope_part_ops(p.double(), w.double(), cos.double(), sin.double(), shape)
    ops = rp.rope_part_ops(p, w, cos, sin, shape)  # rounded at every op: the ops the kernel replaces
    err_ref = (ref.double() - exact).abs().max().item()
    err_ops = (ops.double() - exact).abs().max().item()
    assert err_ref <= err_ops + 1e-12, (err_ref, err_ops)  # one rounding, no worse than five


def test_not_fusable_falls_back_to_the_op_by_op_replay():
    p, w, cos, sin = _inputs(1, 8, 2, 24, 8, BF16)  # head size 24 is no power of two: the kernel's arange
    assert not rp.fusable(p, w, cos, sin, (1, 8, 2, 24))
    torch.testing.assert_close(rp.rope_part(p, w, cos, sin, (1, 8, 2, 24), backend="triton"),
                               rp.rope_part_ops(p, w, cos, sin, (1, 8, 2, 24)), rtol=0, atol=0)
    p, w, cos, sin = _inputs(1, 8, 2, 16, 8, BF16)  # halves of 8 columns: under the dot's 16
    assert not rp.fusable(p, w, cos, sin, (1, 8, 2, 16))
    p, w, cos, sin = _inputs(1, 8, 2, 32, 8, BF16)
    assert rp.fusable(p, w, cos, sin, (1, 8, 2, 32))  # on CPU without backend="triton": the replay too
    torch.testing.assert_close(rp.rope_part(p, w, cos, sin, (1, 8, 2, 32)),
                               rp.rope_part_ops(p, w, cos, sin, (1, 8, 2, 32)), rtol=0, atol=0)
    p, w, cos, sin = _inputs(2, 8, 2, 32, 8, FP32, cos_batch=2)
    assert rp.fusable(p, w, cos, sin, (2, 8, 2, 32))
    assert not rp.fusable(p, w, cos[:1, :, :4], sin, (2, 8, 2, 32))  # cos of another length: no expand
    assert not rp.fusable(p, w, cos, sin, (1, 16, 2, 32))  # cos of 2 batch rows for a batch of 1
    assert not rp.fusable(p, w, cos[None], sin, (2, 8, 2, 32))  # 5-d


@pytest.mark.parametrize("dtype,scale", [(BF16, 2.0), (BF16, 1.7), (FP16, 0.3)])
def test_lora_part_casts_its_factors_in_the_kernel_to_the_same_bits(dtype, scale):
    """``rope_lora_part`` hands peft's fp32 ``x·A`` and ``B`` to the kernel, which scales and casts them itself:
    the same bits as casting first with torch (fp32 product, round to nearest even)."""
    shape, r = (2, 24, 3, 32), 16
    p, w, cos, sin = _inputs(*shape, r, FP32)
    cos, sin = cos.to(dtype), sin.to(dtype)
    got = rp.rope_lora_part(p, w, scale, dtype, cos, sin, shape, backend="triton")
    want = rp.rope_part(p.to(dtype), (w * scale).to(dtype), cos, sin, shape, backend="triton")
    assert got.dtype == want.dtype == dtype and torch.equal(got, want)
    # off the kernel path (CPU, no backend forced): the casts, then the op-by-op replay, as before
    assert torch.equal(rp.rope_lora_part(p, w, scale, dtype, cos, sin, shape),
                       rp.rope_part_ops(p.to(dtype), (w * scale).to(dtype), cos, sin, shape))


@pytest.mark.parametrize("dtype,cast", [(BF16, None), (FP16, None), (BF16, 1.7), (FP16, 0.3)])
def test_combine_is_the_parts_bits_then_torchs_sub_and_add(dtype, cast):
    """``rope_combine`` forms the part in registers and adds or subtracts it in its pass: the same bits as the part
    the kernel writes alone, then torch's 16-bit ``sub``/``add`` (fp32, one rounding), so a forward that subtracts it
    fused and a backward that adds it either way agree."""
    shape, r = (2, 40, 3, 32), 16  # 80 rows: a tile the mask cuts
    p, w, cos, sin = _inputs(*shape, r, FP32 if cast else dtype)
    cos, sin = cos.to(dtype), sin.to(dtype)
    factors = (p, w, cos, sin, shape, (dtype, cast) if cast else None)
    alone = rp._run(*factors, None)  # the part, (B·T, H·D)
    assert alone.dtype == rp.part_dtype(p, w, cos, sin, factors[-1]) == dtype
    t = (torch.randn(alone.shape, generator=torch.Generator().manual_seed(5)) * 4).to(dtype)
    for subtract in (True, False):
        got = rp.rope_combine(t, *factors[:5], subtract, factors[5])
        want = torch.sub(t, alone) if subtract else torch.add(t, alone)
        assert got.dtype == dtype and torch.equal(got, want), subtract


@pytest.mark.parametrize("shape,r,dtype,cos_batch", _CASES)
def test_rebuild_kernel_matches_reference(shape, r, dtype, cos_batch):
    """q/k from a stored frozen term (``rope_rebuild``): the term plus the part, rotated, in fp32 with one rounding,
    in the layout the forward's RoPE output has; the op-by-op path (CPU) rounds at every op and errs no less."""
    p, w, cos, sin = _inputs(*shape, r, dtype, cos_batch)
    b, t, h, d = shape
    base = (torch.randn(b, t, h * d, generator=torch.Generator().manual_seed(3)) * 4).to(dtype)
    got = rp.rope_rebuild(base, p, w, cos, sin, shape, backend="triton")
    ref = rp.rope_rebuild_ref(base, p, w, cos, sin, shape)
    ops = rp.rope_rebuild_ops(base, p, w, cos, sin, shape)
    assert got.dtype == ref.dtype == ops.dtype == dtype and got.shape == (b, h, t, d)
    assert _layout(got) == _layout(ops) == _layout(base.view(b, t, h, d).transpose(1, 2))
    eps = torch.finfo(dtype).eps
    tol = eps * ref.float().abs().clamp_min(1.0) * 1.01
    if dtype == FP32:
        tol = tol + 2 * (r + 6) * eps * (ref.float().abs() + base.abs().max() + 1)
    assert ((got.float() - ref.float()).abs() <= tol).all()
    exact = rp.rope_rebuild_ops(base.double(), p.double(), w.double(), cos.double(), sin.double(), shape)
    assert (ref.double() - exact).abs().max() <= (ops.double() - exact).abs().max() + 1e-12
    # against the forward's own ops: rope of the projection's output viewed as heads
    y = (base + (p.double() @ w.double().T).view(b, t, h * d)).view(b, t, h, d).transpose(1, 2)
    want = y * cos.double() + torch.cat((-y[..., d // 2:], y[..., :d // 2]), dim=-1) * sin.double()
    torch.testing.assert_close(exact, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,scale", [(BF16, 1.7), (FP16, 0.3)])
def test_rebuild_casts_the_lora_factors_as_the_part_does(dtype, scale):
    """With ``cast`` the kernel scales and casts fp32 ``x·A`` and ``B`` itself: the same bits as casting first;
    off the kernel path the casts come first, then the ops."""
    shape, r = (2, 40, 3, 32), 16
    p, w, cos, sin = _inputs(*shape, r, FP32)
    cos, sin = cos.to(dtype), sin.to(dtype)
    base = (torch.randn(2 * 40, 3 * 32, generator=torch.Generator().manual_seed(4)) * 4).to(dtype)
    cast_first = (p.to(dtype), (w * scale).to(dtype))
    got = rp.rope_rebuild(base, p, w, cos, sin, shape, (dtype, scale), backend="triton")
    assert torch.equal(got, rp.rope_rebuild(base, *cast_first, cos, sin, shape, backend="triton"))
    assert torch.equal(rp.rope_rebuild(base, p, w, cos, sin, shape, (dtype, scale)),
                       rp.rope_rebuild_ops(base, *cast_first, cos, sin, shape))


@pytest.mark.parametrize("heads", [2, 4])
@pytest.mark.parametrize("per_head", [False, True])
def test_programs_walking_heads_give_the_same_bits(heads, per_head, monkeypatch):
    """A program that walks several heads (``_HEADS``) reuses its x·A, cos and sin tiles: the same bits as one head a
    program, for the part alone and combined; cos/sin that differ per head keep one head a program."""
    shape, r = (2, 40, 4, 32), 16
    p, w, cos, sin = _inputs(*shape, r, FP32)
    cos, sin = cos.to(BF16), sin.to(BF16)
    if per_head:  # (1, H, T, D): a head stride that is not 0
        cos, sin = cos.expand(1, 4, 40, 32).contiguous(), sin.expand(1, 4, 40, 32).contiguous() * 0.5
    factors = (p, w, cos, sin, shape, (BF16, 1.7))
    t = (torch.randn(2 * 40, 4 * 32, generator=torch.Generator().manual_seed(3)) * 4).to(BF16)
    monkeypatch.setattr(rp, "_launches", {})
    monkeypatch.setattr(rp, "_HEADS", 1)
    want = [rp._run(*factors, None), rp._run(*factors, (t, 2))]
    monkeypatch.setattr(rp, "_HEADS", heads)
    got = [rp._run(*factors, None), rp._run(*factors, (t, 2))]
    assert all(torch.equal(g, x) for g, x in zip(got, want))
    walked = {key[-1] for key in rp._launches}
    assert walked == ({1} if per_head else {1, heads})


@pytest.mark.parametrize("layout", ["heads", "copied", "fp32"])
def test_fused_combine_through_the_parts_views(layout, monkeypatch):
    """q is the projection's output viewed as heads, transposed, through RoPE: the fused subtraction must meet each
    element with its own part; a tensor in another layout (a contiguous copy, as a KV cache's concatenation) or of
    another dtype than the part's must take the unfused path, with the same value."""
    monkeypatch.setattr(rp, "use_triton", lambda t: True)
    part, (p, w, cos, sin, (b, t, h, d)) = _part_nodes()
    fused = lineage.fuse_rope(part)
    y = (torch.randn(b, t, h * d) * 3).view(b, t, h, d).transpose(1, 2)
    if layout == "copied":
        y = y.contiguous()
    elif layout == "fp32":  # the part here is fp32: a bf16 tensor cannot take the kernel's fp32 rounding
        y = y.to(BF16)
    want = lineage.lora_combine(y, lineage.evaluate(fused), y.dtype, subtract=True)  # the unfused path
    combined = lineage._combine_lora_part(y, fused, {}, subtract=True)
    assert (combined is None) == (layout != "heads")
    got = lineage.lora_subtract(y, fused)
    assert torch.equal(got, want) and got.stride() == want.stride()
    rebuilt = lineage.evaluate(lineage.LoraRebuild(lineage.Const(want), fused, want.dtype))
    assert torch.equal(rebuilt, lineage.lora_combine(want, lineage.evaluate(fused), want.dtype, subtract=False))


# ------------------------------------------------------------------------------------------- the pattern
def _part_nodes(rot_lo: slice | None = None, other_y: bool = False, order: int = 0, cheap: bool = False):
    """A LoRA part as the planner carries it through RoPE (Shared nodes as its memo makes them), with knobs to
    break the pattern: another slice for rotate_half's second half, or rotate_half of another tensor; ``cheap``:
    the branch's factors cast to bf16 as ``lineage.cheap_branch`` makes them (cos and sin in bf16 too)."""
    b, t, h, d, r = 1, 8, 2, 32, 4
    p, w, cos, sin = _inputs(b, t, h, d, r, FP32)
    if cheap:
        cos, sin = cos.to(BF16), sin.to(BF16)

    def heads(wt):
        x, wn = lineage.Const(p), lineage.Const(wt)
        if cheap:
            x = lineage.Replay(lineage._cast, "cast", (x, BF16), {})
            wn = lineage.Replay(lineage._scaled, "scaled", (wn, 2.0, BF16), {})
        lin = lineage.Replay(torch.nn.functional.linear, "linear", (x, wn), {})
        view = lineage.Shared(lineage.Replay(torch.Tensor.view, "view", (lin, (b, t, -1, d)), {}))
        return lineage.Shared(lineage.Replay(torch.transpose, "transpose", (view, 1, 2), {}))

    y = heads(w)
    y2 = heads(w * 2) if other_y else y
    hi = lineage.Shared(lineage.Replay(torch.Tensor.__getitem__, "getitem", (y2, (Ellipsis, slice(d // 2, None))), {}))
    lo = lineage.Shared(lineage.Replay(torch.Tensor.__getitem__, "getitem",
                                       (y, (Ellipsis, rot_lo or slice(None, d // 2))), {}))
    neg = lineage.Shared(lineage.Replay(torch.neg, "neg", (hi,), {}))
    rot = lineage.Shared(lineage.Replay(torch.cat, "cat", ((neg, lo),), {"dim": -1}))
    c, s = lineage.Const(cos), lineage.Const(sin)
    m1 = lineage.Replay(torch.mul, "mul", (y, c) if order == 0 else (c, y), {})
    m2 = lineage.Replay(torch.mul, "mul", (rot, s) if order == 0 else (s, rot), {})
    part = lineage.Replay(torch.add, "add", (m1, m2) if order == 0 else (m2, m1), {})
    return part, (p, w, cos, sin, (b, t, h, d))


@pytest.mark.parametrize("order", [0, 1])
def test_fuse_rope_finds_the_pattern(order):
    part, (p, w, cos, sin, shape) = _part_nodes(order=order)
    fused = lineage.fuse_rope(part)
    assert isinstance(fused, lineage.RopePart)
    torch.testing.assert_close(lineage.evaluate(fused), lineage.evaluate(part), rtol=1e-5, atol=1e-5)
    assert lineage.recipe_key(fused) is not None  # recipes with it still find their twins


def test_fuse_rope_reads_the_cheap_branch_factors_themselves():
    """With the cheap branch's casts under it, the fused part reads ``x·A`` and ``B`` and leaves the casts to
    ``rope_lora_part``: the same bits as the fused part over the cast nodes, and a recipe key of its own."""
    part, (p, w, cos, sin, shape) = _part_nodes(cheap=True)
    fused = lineage.fuse_rope(part)
    assert isinstance(fused, lineage.RopePart) and fused.func is lineage._rope_lora_part
    x, b = fused.args[:2]
    assert isinstance(x, lineage.Const) and x.value is p and isinstance(b, lineage.Const) and b.value is w
    cast = lineage.Replay(lineage._cast, "cast", (lineage.Const(p), BF16), {})
    scaled = lineage.Replay(lineage._scaled, "scaled", (lineage.Const(w), 2.0, BF16), {})
    before = lineage.Replay(lineage._rope_part, "rope_part", (cast, scaled) + fused.args[4:], {})
    got = lineage.evaluate(fused)
    assert got.dtype == BF16 and torch.equal(got, lineage.evaluate(before))
    assert lineage.recipe_key(fused) is not None and lineage.recipe_key(fused) != lineage.recipe_key(before)


@pytest.mark.parametrize("broken", ["slice", "other_y"])
def test_fuse_rope_leaves_other_expressions(broken):
    part, _ = _part_nodes(rot_lo=slice(None, 4) if broken == "slice" else None, other_y=broken == "other_y")
    assert lineage.fuse_rope(part) is part


# ---------------------------------------------------------------------------------- a step with the kernel
@pytest.mark.parametrize("preset", ["intra_inter", "intra_inter_full_fuse"])
@pytest.mark.parametrize("kv_heads,cache", [(4, False), (2, False), (4, True)])
def test_step_with_the_kernel_rebuilds_q_and_k(preset, kv_heads, cache, monkeypatch):
    """With q/k's frozen weights zeroed, q and k are their LoRA parts only: the stored frozen term is ~0, so 2-bit
    q/k give near-exact gradients only if the backward forms the part and meets each element with its own, here by
    the kernel (forced on CPU under the interpreter)."""
    monkeypatch.setattr("hyclora_hooks.lineage.MAX_REPLAY_LINEAR_RANK", 16)  # as at real widths
    monkeypatch.setattr(rp, "use_triton", lambda t: True)
    calls = []
    real = rp._run
    monkeypatch.setattr(rp, "_run", lambda *a: calls.append(a[-1][1] if a[-1] else 0) or real(*a))
    model = add_lora(tiny_llama(attn="sdpa", kv_heads=kv_heads, dtype=BF16, use_cache=cache))
    batch = random_batch(model.config.vocab_size, batch=2, seq=32) | ({"use_cache": True} if cache else {})
    zero_frozen(model, "q_proj", "k_proj")
    _, exact, _ = seeded_step(model, batch)
    two_bits = {"bits": 2, "group_size": 64, "granularity": "token_group"}
    policy = Policy(name="qk2", inter=True, fuse=preset.endswith("fuse"), rules=(
        Rule(codec="quant", op_class="attention", role=("query", "key"), params=two_bits),
        Rule(codec="keep", op_class=("*",))))
    # q (the projection's output as heads, transposed, through RoPE) and k store their projections' frozen terms
    # (NOTE [Frozen term] rule 4): no pass in the forward, and one in the backward that adds the part and rotates
    # the sum. With a KV cache SDPA's key is the cache's concatenation, a copy that carries no term: its part is
    # formed by the kernel, subtracted in the forward and added in the backward by torch. The first step records
    # its decisions, the next two replay them (NOTE [Replay]) on the same paths.
    layers = model.config.num_hidden_layers
    part, rebuild = 0, 3  # rope_part._run's modes
    frozen, copied = (1 if cache else 2) * layers, (layers if cache else 0)
    calls.clear()
    for step, grads in replayed_steps(model, batch, policy):
        assert sorted(calls) == sorted([rebuild] * frozen + [part] * 2 * copied), (step, calls)
        assert cosine(grads, exact) >= 0.999, (step, cosine(grads, exact))
        calls.clear()
