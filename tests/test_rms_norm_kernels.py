"""kernels/rms_norm.py under TRITON_INTERPRET=1: the forward and the input's gradient of a Llama RMSNorm with a
frozen weight against Hugging Face's module and autograd through it, at ragged widths and both 16-bit dtypes."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402

from hyclora_hooks.kernels import rms_norm  # noqa: E402

BF16, FP16 = torch.bfloat16, torch.float16


def _case(rows: int, width: int, dtype: torch.dtype, seed: int = 0):
    """(Hugging Face's norm with a random frozen weight, an input that needs a gradient, an incoming gradient)."""
    gen = torch.Generator().manual_seed(seed)
    norm = LlamaRMSNorm(width, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(width, generator=gen))
    norm.weight.requires_grad_(False)
    x = (3 * torch.randn(2, rows, width, generator=gen)).to(dtype).requires_grad_()
    g = torch.randn(2, rows, width, generator=gen).to(dtype)
    return norm, x, g


def _within(got: torch.Tensor, want: torch.Tensor, steps: float) -> bool:
    """``got`` within ``steps`` of ``want``'s dtype's rounding steps (relative, and of the largest value near zero)."""
    eps = torch.finfo(want.dtype).eps
    diff = (got.double() - want.double()).abs()
    return bool((diff <= steps * eps * (want.double().abs() + 1e-3 * want.double().abs().max())).all())


@pytest.mark.parametrize("width", [64, 96, 130])
@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("backend", ["ref", "triton"])
def test_forward_is_hugging_faces_norm(width, dtype, backend):
    """The output is the module's to one rounding of its dtype, and its bits but for a rare value the squares summed
    in another order move past a tie (the reference, torch's own ops, gives its bits); ``rstd`` to fp32 rounding."""
    norm, x, _ = _case(7, width, dtype)
    want = norm(x.detach())
    out, rstd = rms_norm.rms_norm(x.detach(), norm.weight, norm.variance_epsilon, backend)
    x32 = x.detach().double()
    want_rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    assert out.dtype == dtype and out.shape == x.shape and rstd.shape == x.shape[:-1] + (1,)
    assert ((rstd.double() - want_rstd).abs() / want_rstd).max() < 1e-6
    if backend == "ref":
        assert torch.equal(out, want)
    else:  # a value moved past a tie is rare (a kernel that skips the rounding to half between the products
        assert _within(out, want, 1.01) and (out != want).double().mean() < 0.01  # differs in a quarter of them)


@pytest.mark.parametrize("width", [64, 96, 130])
@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("backend", ["ref", "triton"])
@pytest.mark.parametrize("wide_input", [False, True])
def test_backward_is_autograds_through_the_module(width, dtype, backend, wide_input):
    """The input's gradient against autograd's backward of the module, to a few rounding steps of its dtype (its
    sums in another order), and against the exact gradient (fp64) to two steps more than autograd's own error;
    ``x`` may come fp32 (a saved copy decoded wide), ``rstd`` is the forward's."""
    norm, x, g = _case(5, width, dtype, seed=1)
    (want,) = torch.autograd.grad(norm(x), x, g)
    _, rstd = rms_norm.rms_norm_ref(x.detach(), norm.weight, norm.variance_epsilon)
    xs = x.detach().float() if wide_input else x.detach()
    got = rms_norm.rms_norm_backward(g, xs, rstd, norm.weight, backend)
    assert got.dtype == dtype and got.shape == x.shape
    x64, w64 = x.detach().double().requires_grad_(), norm.weight.double()
    r64 = torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    (exact,) = torch.autograd.grad(w64 * (x64 * r64), x64, g.double())
    own = (want.double() - exact).abs().max()
    assert (got.double() - exact).abs().max() <= own + 2 * torch.finfo(dtype).eps * exact.abs().max()
    assert _within(got, want, 4)


def test_the_kernels_take_only_their_case():
    """A trainable weight, a weight of another dtype, fp32 input or a width past ``MAX_WIDTH`` leave the reference."""
    x = torch.randn(3, 64).bfloat16()
    w = torch.ones(64).bfloat16()
    assert rms_norm.fits(x, w)
    assert not rms_norm.fits(x, w.clone().requires_grad_())
    assert not rms_norm.fits(x, w.half()) and not rms_norm.fits(x.float(), w.float())
    wide = rms_norm.MAX_WIDTH * 2
    assert not rms_norm.fits(torch.randn(2, wide).bfloat16(), torch.ones(wide).bfloat16())
    assert not rms_norm.fits(x.t(), torch.ones(3).bfloat16())
