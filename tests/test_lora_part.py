"""A plain LoRA part in one pass (NOTE [Fused LoRA part] in lineage.py, kernels/lora_part.py): the kernel against
torch's ops under TRITON_INTERPRET=1, the pattern that finds the part, the fused combine through the part's views,
and compressed steps that run the kernel end to end."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hyclora_hooks import lineage  # noqa: E402
from hyclora_hooks.kernels import lora_part as lp  # noqa: E402
from hyclora_hooks.models import add_lora, random_batch, tiny_llama  # noqa: E402
from hyclora_hooks.policy import Policy, Rule  # noqa: E402
from tests.conftest import cosine, zero_frozen  # noqa: E402
from tests.test_inter import replayed_steps, seeded_step  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def _inputs(lead: tuple, n: int, r: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, r, generator=gen)
    b = torch.randn(n, r, generator=gen) * 0.3
    t = (torch.randn(*lead, n, generator=gen) * 3).to(dtype)
    return t, x, b


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    bits = {2: torch.int16, 4: torch.int32}[a.element_size()]
    return a.shape == b.shape and bool(((a.view(bits) == b.view(bits)) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("lead,n,r", [((1, 5), 7, 16), ((2, 65), 300, 8), ((64,), 129, 33)])
def test_kernel_part_is_the_rounded_dot_and_combines_with_its_own_bits(dtype, lead, n, r):
    t, x, b = _inputs(lead, n, r, dtype)
    scale = 0.5
    part = lp.lora_part(x, b, scale, dtype, backend="triton")
    assert part.dtype == dtype and part.shape == t.shape
    # the factors rounded as torch rounds them, the K = r sum exact in fp64, rounded once: the kernel's fp32 sum of
    # exact products may differ from it by the fp32 sum's error (r terms) and one rounding of the dtype
    xs, bs = x.to(dtype).double(), (b * scale).to(dtype).double()
    exact = xs @ bs.T
    fp32_err = r * 2.0 ** -23 * (xs.abs() @ bs.abs().T)
    info = torch.finfo(dtype)
    bound = exact.abs() * info.eps + fp32_err + info.smallest_normal * info.eps
    assert ((part.double() - exact).abs() <= bound).all()
    for subtract in (True, False):
        got = lp.lora_combine(t, x, b, scale, dtype, subtract, backend="triton")
        assert _same(got, lp.combine_ref(t, part, subtract))  # one rounding of t -/+ the same part


def test_operands_the_kernel_does_not_take_fall_back_to_torch():
    t, x, b = _inputs((4,), 32, 16, BF16)
    assert lp.fusable(x, b, BF16, t) and lp.fusable(x, b, BF16)
    assert not lp.fusable(x, b, FP32)  # no 16-bit cast: the branch keeps its dtype
    assert not lp.fusable(x.bfloat16(), b, BF16)  # the factors are peft's fp32 ones
    assert not lp.fusable(x, b.t().contiguous().t(), BF16)
    assert not lp.fusable(x, b, BF16, t.float())
    assert not lp.fusable(x, b, BF16, t.t().contiguous().t())
    big = torch.randn(4, 129)
    assert not lp.fusable(big, torch.randn(32, 129), BF16)  # rank over 128
    tt = t.t().contiguous().t()  # not contiguous: the part from the kernel, the sum by torch
    part = lp.lora_part(x, b, 2.0, BF16, backend="triton")
    assert _same(lp.lora_combine(tt, x, b, 2.0, BF16, True, backend="triton"), torch.sub(tt, part))
    assert lp.lora_part(torch.empty(0, 16), b, 2.0, BF16, backend="triton").shape == (0, 32)


def _branch(x: torch.Tensor, b: torch.Tensor, scale: float):
    """cheap_branch's nodes for a bf16 tensor: ``linear(cast(x·A, bf16), scaled(B, s, bf16))``."""
    lin = lineage.Replay(torch.nn.functional.linear, "linear", (lineage.Const(x), lineage.Const(b)), {})
    branch = lineage.Replay(torch.mul, "mul", (lin, scale), {})
    return lineage.cheap_branch(branch, BF16)


def test_fuse_lora_parts_keeps_the_value_and_the_sharing_on_cpu():
    _, x, b = _inputs((2, 6), 64, 16, BF16)
    shared = lineage.Shared(_branch(x, b, 0.25))
    view = lineage.Replay(torch.Tensor.view, "view", (shared, (2, 6, 4, 16)), {})
    part = lineage.Replay(torch.add, "add", (view, view), {})
    fused = lineage.fuse_lora_parts(part, {})
    a, c = fused.args
    assert a is c and isinstance(a.args[0], lineage.Shared) and isinstance(a.args[0].inner, lineage.LoraPart)
    assert _same(lineage.evaluate(fused), lineage.evaluate(part))  # on CPU: the same torch ops
    assert lineage.recipe_key(fused) is not None
    other = lineage.Replay(torch.nn.functional.linear, "linear", (lineage.Const(x), lineage.Const(b)), {})
    assert lineage.fuse_lora_parts(other, {}) is other  # no casts: not the cheap form


@pytest.mark.parametrize("layout", ["heads", "flat", "copied"])
def test_combine_through_the_parts_views(layout, monkeypatch):
    """SDPA's value is the projection's output viewed as heads and transposed: the fused subtraction must meet each
    element with its own part; a tensor in another layout than the views give (a contiguous copy) must take the
    unfused path, with the same value."""
    monkeypatch.setattr(lp, "use_triton", lambda t: True)
    _, x, b = _inputs((2, 6), 64, 16, BF16)
    part = lineage.fuse_lora_parts(_branch(x, b, 0.5), {})
    y = (torch.randn(2, 6, 64) * 3).to(BF16)
    if layout != "flat":
        part = lineage.Replay(torch.Tensor.transpose, "transpose", (lineage.Replay(
            torch.Tensor.view, "view", (part, (2, 6, 4, 16)), {}), 1, 2), {})
        t = y.view(2, 6, 4, 16).transpose(1, 2)
        if layout == "copied":  # the same shape and values, other strides
            t = t.contiguous()
    else:
        t = y
    want = torch.sub(t, lineage.evaluate(part))  # the kernel's part, then torch's subtraction
    assert _same(lineage.lora_subtract(t, part), want) and lineage.lora_subtract(t, part).stride() == want.stride()
    fused = lineage._combine_lora_part(t, part, {}, subtract=True)
    assert (fused is None) == (layout == "copied")
    rebuilt = lineage.evaluate(lineage.LoraRebuild(lineage.Const(want), part, BF16))
    assert _same(rebuilt, torch.add(want, lineage.evaluate(part)))


@pytest.mark.parametrize("preset", ["intra_inter", "intra_inter_full_fuse"])
@pytest.mark.parametrize("kv_heads,cache", [(4, False), (2, False), (4, True)])
def test_step_with_the_kernel_rebuilds_value_gate_and_up(preset, kv_heads, cache, monkeypatch):
    """With v/gate/up's frozen weights zeroed, those tensors are their LoRA parts only: the stored frozen term (``X·W``,
    or ``t - part`` where v is a copy) is ~0, so 2-bit v/gate/up give near-exact gradients only if forward and
    backward form the same part and meet each element with its own (here by the kernel, forced on CPU under the
    interpreter)."""
    monkeypatch.setattr("hyclora_hooks.lineage.MAX_REPLAY_LINEAR_RANK", 16)  # as at real widths
    monkeypatch.setattr(lp, "use_triton", lambda t: True)
    calls = []
    real = lp._run
    monkeypatch.setattr(lp, "_run", lambda *a: calls.append(a[-1]) or real(*a))
    model = add_lora(tiny_llama(attn="sdpa", kv_heads=kv_heads, dtype=BF16, use_cache=cache))
    batch = random_batch(model.config.vocab_size, batch=2, seq=32) | ({"use_cache": True} if cache else {})
    zero_frozen(model, "v_proj", "gate_proj", "up_proj")
    _, exact, _ = seeded_step(model, batch)
    two_bits = {"bits": 2, "group_size": 64, "granularity": "token_group"}
    policy = Policy(name="vgu2", inter=True, fuse=preset.endswith("fuse"), rules=(
        Rule(codec="quant", op_class="attention", role="value", params=two_bits),
        Rule(codec="quant", op_class=("activation", "mul"), params=two_bits),
        Rule(codec="keep", op_class=("*",))))
    # gate, up and v (the projection's output viewed as heads, transposed; also under GQA) store their frozen term
    # X·W as the forward made it (NOTE [Frozen term]): no subtraction; the backward adds every part in one pass
    # (full_fuse: the dequantize kernel adds the part the kernel formed). With a KV cache, SDPA's value is the
    # cache's concatenation, a copy: its part is formed by the kernel and subtracted and added by torch. The first
    # step records its decisions, the next two replay them (NOTE [Replay]): a replayed part is the plan's template
    # read with the step's entries, and takes the same path.
    layers = model.config.num_hidden_layers
    added, copied = (2 if cache else 3) * layers, (layers if cache else 0)
    calls.clear()
    for step, grads in replayed_steps(model, batch, policy):
        assert calls.count("sub") == 0, (step, calls)
        if preset == "intra_inter":
            assert (calls.count("add"), calls.count("part")) == (added, 2 * copied)
        else:
            assert (calls.count("add"), calls.count("part")) == (0, added + 2 * copied)
        assert cosine(grads, exact) >= 0.999, (step, cosine(grads, exact))
        calls.clear()
