"""peft's LoRA sum as one node (NOTE [LoRA sum] in hyclora_hooks/lora_sum.py; kernels/lora_sum.py under
TRITON_INTERPRET=1): torch's bits for the sum and for the adapter's gradient, gradients of the node equal to peft's
three ops', and replayed lean bodies that end with it giving the deciding copy's gradients bit for bit."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import hyclora_hooks as hyclora  # noqa: E402
from hyclora_hooks import lora_branch, lora_sum  # noqa: E402
from hyclora_hooks.kernels import lora_sum as kernels  # noqa: E402
from hyclora_hooks.models import add_lora, graph_nodes, lora_grads, random_batch, tiny_llama  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def _operands(dtype: torch.dtype, n: int = 5000, specials: bool = False):
    """A base of ``dtype`` and an fp32 branch over many magnitudes (ties and cancellations in the sum)."""
    gen = torch.Generator().manual_seed(n)
    base, lora = torch.randn(2, n, generator=gen) * torch.logspace(-4, 4, n)
    if specials:  # overflow of the 16-bit result, inf - inf, NaN, signed zeros
        base[:5] = torch.tensor([6e4, float("inf"), float("nan"), -0.0, 1.0])
        lora[:5] = torch.tensor([3e38, float("-inf"), 1.0, -0.0, 1e-30])
    return base.to(dtype), lora


@pytest.mark.parametrize("dtype", [BF16, FP16, FP32])
@pytest.mark.parametrize("scaling", [2.0, 0.3, 3])
@pytest.mark.parametrize("specials", [False, True])
def test_kernels_give_torchs_bits(dtype, scaling, specials):
    base, lora = _operands(dtype, specials=specials)  # 5000 elements: five programs, the last cut by the mask
    got = kernels.lora_sum(base, lora, scaling, backend="triton")
    want = kernels.lora_sum_ref(base, lora, scaling)
    assert got.dtype == want.dtype == dtype
    _same_bits(got, want)
    grad = base  # any tensor of the output's dtype
    got, want = kernels.scaled_grad(grad, scaling, backend="triton"), kernels.scaled_grad_ref(grad, scaling)
    assert got.dtype == want.dtype == FP32
    _same_bits(got, want)


def _same_bits(got, want):
    """Equal values, zeros' signs included; NaN where the other has NaN (a NaN's payload is the device's own)."""
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(torch.signbit(got[~got.isnan()]), torch.signbit(want[~want.isnan()]))


def test_the_reference_is_pefts_expression():
    """The oracle is the expression peft's forward evaluates (``result + lora * scaling``, then the cast back)."""
    base, lora = _operands(BF16)
    assert torch.equal(kernels.lora_sum_ref(base, lora, 2.0), (base + lora * 2.0).to(BF16))
    assert not torch.equal(kernels.lora_sum_ref(base, lora, 2.0), (base.float() + lora * 2.0).to(FP16).to(BF16))


@pytest.mark.parametrize("backend", ["ref", "triton"])
@pytest.mark.parametrize("base_grad", [True, False])
def test_the_node_gives_pefts_gradients(backend, base_grad, monkeypatch):
    """One node's gradients against autograd through peft's ``mul``, ``add`` and cast, bit for bit; a base that
    needs no gradient (a first layer's q, k, v) gets none."""
    for name in ("lora_sum", "scaled_grad"):
        fn = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _fn=fn: _fn(*a, backend=backend))
    base, lora = _operands(BF16, n=3000)
    base.requires_grad_(base_grad)
    lora.requires_grad_(True)
    incoming = _operands(BF16, n=3001)[0][:3000]
    out = lora_sum.apply(base, lora, 0.5)
    assert type(out.grad_fn).__name__ == "_LoraSumBackward"
    got = torch.autograd.grad(out, [t for t in (base, lora) if t.requires_grad], incoming)
    b2, l2 = base.detach().requires_grad_(base_grad), lora.detach().requires_grad_(True)
    want = torch.autograd.grad((b2 + l2 * 0.5).to(BF16), [t for t in (b2, l2) if t.requires_grad], incoming)
    assert torch.equal(torch.cat([g.float().flatten() for g in got]), torch.cat([g.float().flatten() for g in want]))


def test_fits_only_fp32_branches_of_one_shape_and_python_scalings():
    base, lora = _operands(BF16, n=64)
    assert lora_sum.fits(base, lora, 2.0) and lora_sum.fits(base, lora, 2)
    assert not lora_sum.fits(base, lora.to(BF16), 2.0)  # 16-bit adapters: peft rounds the product first
    assert not lora_sum.fits(base, lora, torch.tensor(2.0))
    assert not lora_sum.fits(base, lora, True)
    assert not lora_sum.fits(base[:32], lora, 2.0)  # broadcast
    assert not lora_sum.fits(base.view(8, 8).t(), lora.view(8, 8), 2.0)  # not contiguous
    assert not lora_sum.fits(torch.nn.Parameter(base), lora, 2.0)  # a tensor subclass

    class Other(torch.Tensor):
        pass

    assert not lora_sum.fits(base, lora.as_subclass(Other), 2.0)


def node_step(model, batch, replay, node="_LoraSumBackward"):
    """One ``intra_inter@2`` step: (the LoRA gradients, how many ``node``s its graph held, the context)."""
    torch.manual_seed(0)
    with hyclora.compress("intra_inter", replay=replay, bits=2) as ctx:
        loss = model(**batch).loss
    nodes = graph_nodes(loss, node)
    loss.backward()
    grads = lora_grads(model)
    model.zero_grad(set_to_none=True)
    return grads, nodes, ctx


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_replayed_lean_bodies_end_with_one_node_and_keep_the_deciding_copys_bits(fused, dropout, monkeypatch):
    """Replayed decoder layers' LoRA linears (bf16 model, fp32 adapters: peft's default) end with the node, one a
    linear; their gradients and stored bytes are the deciding copy's (peft's forward) bit for bit. With ``FUSED``
    off no node is made, and the bits are the same. (The branch node, NOTE [LoRA branch], is off here: it would take
    the dropout-free linears; tests/test_lora_branch.py has it.)"""
    monkeypatch.setattr(lora_sum, "FUSED", fused)
    monkeypatch.setattr(lora_branch, "ENABLED", False)
    on = add_lora(tiny_llama(vocab=256, dtype=BF16, use_cache=False, layers=3), dropout=dropout)
    on.train()
    off = copy.deepcopy(on)
    batch = random_batch(256, batch=2, seq=16)
    linears = sum(type(m).__name__ == "Linear" and hasattr(m, "lora_A") for m in on.modules())
    for step in range(3):  # records, then replays
        got, nodes, ctx = node_step(on, batch, True)
        want, none, ref = node_step(off, batch, False)
        assert torch.equal(got, want) and none == 0
        assert ctx.report().stored_bytes == ref.report().stored_bytes
    assert ctx.replayed_units > 0 and ctx.replayed_packs == ctx.report().packs
    assert nodes == (linears if fused else 0)  # every LoRA linear, the first layer's too (session 34's unit)


def test_a_gradient_that_is_not_contiguous_takes_the_reference_with_the_same_values():
    """An expanded incoming gradient (``out.sum()``'s) cannot take the kernel; the node's backward still gives peft's
    gradients."""
    base, lora = _operands(BF16, n=256)
    lora.requires_grad_(True)
    got = torch.autograd.grad(lora_sum.apply(base, lora, 0.25).sum(), lora)[0]
    l2 = lora.detach().requires_grad_(True)
    want = torch.autograd.grad((base + l2 * 0.25).to(BF16).sum(), l2)[0]
    assert torch.equal(got, want)


def test_apply_skips_functions_python_wrapper_outside_functorch_only():
    """Rule 4: outside functorch's transforms the node is made through autograd's C entry point, with no Python frame
    of ``Function.apply``; inside one, through ``Function.apply`` (which asks a node without ``setup_context`` to
    define one: the same error as before rule 4)."""
    import sys

    base, lora = _operands(BF16, n=64)
    base.requires_grad_(True)
    lora.requires_grad_(True)
    frames = []

    def profile(frame, event, arg):
        if event == "call":
            frames.append((frame.f_code.co_filename.replace("\\", "/"), frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        out = lora_sum.apply(base, lora, 2.0)
    finally:
        sys.setprofile(None)
    assert not [f for f in frames if f[0].endswith("torch/autograd/function.py")], frames
    assert type(out.grad_fn).__name__ == "_LoraSumBackward"
    assert torch.equal(out, kernels.lora_sum_ref(base.detach(), lora.detach(), 2.0))
    with pytest.raises(RuntimeError, match="setup_context"):
        torch.func.grad(lambda b: lora_sum.apply(b, lora.detach(), 2.0).float().sum())(base.detach())
