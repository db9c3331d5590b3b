"""Dropout masks' Triton passes (kernels/bitmask.py) under TRITON_INTERPRET=1: packing and unpacking give the torch
reference's bytes and bools, and a dropped input rebuilt from the bits gives ``x * mask * scale``'s bits, in the
kernel and in a recipe (lineage.DropoutApply). On a GPU ``benchmarks/experiments/dropout_masks.py`` checks whole
steps against plain autograd."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hyclora_hooks import lineage  # noqa: E402
from hyclora_hooks.codecs import make_codec  # noqa: E402
from hyclora_hooks.engine import Entry  # noqa: E402
from hyclora_hooks.kernels import bitmask  # noqa: E402

from test_norm_tail import _inputs, _same  # noqa: E402  (equal bits, signed zeros included, or both NaN)

SIZES = [1, 7, 8, 9, 4096 * 2 + 5, 8 * 1024 * 3 + 1]  # one byte, cut bytes, several programs, a cut last program


def _mask(n: int, seed: int, p: float = 0.3) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) >= p


def _x(n: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 10
    x[: min(n, 6)] = torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0, -3e38, 1e-40])[: min(n, 6)]
    return x


@pytest.fixture
def kernels(monkeypatch):
    """The Triton path forced for CPU tensors (run by the interpreter); the launches counted by kernel."""
    monkeypatch.setattr(bitmask, "use_triton", lambda t: True)
    calls = []
    real = bitmask._run
    monkeypatch.setattr(bitmask, "_run", lambda kernel, name, *a: calls.append(name) or real(kernel, name, *a))
    return calls


@pytest.mark.parametrize("n", SIZES)
def test_pack_and_unpack_give_the_references_bytes_and_bools(n, kernels):
    mask = _mask(n, n)
    packed = bitmask.pack(mask)
    assert torch.equal(packed, bitmask.pack_ref(mask)) and packed.numel() == -(-n // 8)
    assert torch.equal(bitmask.unpack(packed, n), mask)
    assert kernels == ["pack", "unpack"]


def test_a_strided_mask_is_packed_in_row_major_order(kernels):
    mask = _mask(6 * 11, 1).view(6, 11).t()  # not contiguous: packed from its row-major copy
    assert torch.equal(bitmask.unpack(bitmask.pack(mask), mask.numel()).view(mask.shape), mask)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_apply_gives_the_bits_of_x_times_mask_times_scale(n, p, kernels):
    mask, x = _mask(n, n + 1, p), _x(n, n)
    scale = lineage._dropout_scale(p)
    got = bitmask.apply(x, bitmask.pack(mask), scale)
    assert kernels == ["pack", "apply"]
    want = x * mask * scale  # the replay's own ops: x * 1 or x * 0 (signed zeros, inf * 0 = NaN), then * scale
    assert _same(got, want)


def test_apply_takes_the_reference_where_the_kernel_does_not_fit(kernels):
    mask = _mask(64, 0)
    packed = bitmask.pack(mask)
    for x in (_x(64, 0).double(), _x(128, 0).view(2, 64)[:, ::2], _x(56, 0)):  # fp64, strided, too few bytes
        assert not bitmask.apply_fits(x, packed)
    x = _x(128, 0)[::2]
    assert _same(bitmask.apply(x, packed, 2.0), x * mask * 2.0) and "apply" not in kernels


def _entry(mask: torch.Tensor) -> Entry:
    codec = make_codec("bitmask", {})
    return Entry(codec, codec.encode(mask), site=None)


def test_a_dropout_recipe_reads_the_bits_without_decoding_the_mask(kernels):
    """``DropoutApply`` of a stored packed bool mask: one pass from the bits, the recorded ops' bits, and the mask's
    own decode left to its reader (dropout's backward)."""
    mask, x = _mask(5 * 40, 2).view(5, 40), _x(5 * 40, 3).view(5, 40)
    entry = _entry(mask)
    kernels.clear()
    node = lineage.DropoutApply(lineage._dropout_apply, "dropout_apply",
                                (lineage.Const(x), lineage.EntryRef(entry), lineage._dropout_scale(0.1)), {})
    got = lineage.evaluate(node)
    assert kernels == ["apply"]
    assert _same(got, x * mask * lineage._dropout_scale(0.1))


def test_a_dropout_recipe_on_anything_else_replays_its_ops(kernels):
    """A mask the kernel cannot read (a CPU noise tensor's bits, a bf16 input) is decoded and applied as recorded."""
    mask, x = _mask(3 * 16, 4).view(3, 16), _x(3 * 16, 5).view(3, 16)
    noise = mask.float() / 0.75
    for m, inp in ((noise, x), (mask, x.bfloat16())):
        node = lineage.DropoutApply(lineage._dropout_apply, "dropout_apply",
                                    (lineage.Const(inp), lineage.EntryRef(_entry(m)), 1 / 0.75), {})
        torch.testing.assert_close(lineage.evaluate(node), lineage._dropout_apply(inp, m, 1 / 0.75), rtol=0, atol=0,
                                   equal_nan=True)
    assert "apply" not in kernels


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_apply_widens_a_16_bit_input_in_the_same_pass(dtype, kernels):
    """peft casts a LoRA input to its fp32 adapters' dtype before the dropout: ``x.float() * keep * scale``."""
    mask, x = _mask(3000, 6), _x(3000, 7)
    x[5] = 1e-30  # not a bf16 subnormal: the interpreter widens those wrongly (kernels/widen.py's cast too)
    x = x.to(dtype)
    got = bitmask.apply(x, bitmask.pack(mask), 1 / 0.9)
    want = x.float() * mask * (1 / 0.9)
    assert kernels == ["pack", "apply"] and got.dtype == torch.float32 and _same(got, want)


def test_a_dropped_rmsnorm_tail_is_written_dropped_by_the_tail_kernel(kernels, monkeypatch):
    """``dropout((w * (x * rstd).to(bf16)).to(fp32))`` (the fused tail below the dropout), its mask stored packed:
    the tail kernel writes it dropped, in one pass, with the bits of the tail then the dropout op by op."""
    from hyclora_hooks.kernels import norm_tail as nt

    x, rstd, w = _inputs((4, 9), 300, torch.bfloat16, seed=8)
    mask = _mask(x.numel(), 9).view(x.shape)
    scale = lineage._dropout_scale(0.2)
    tail = lineage.NormTail(lineage.Const(x), lineage.Const(rstd), lineage.Const(w), torch.bfloat16, torch.float32)
    node = lineage.DropoutApply(lineage._dropout_apply, "dropout_apply",
                                (tail, lineage.EntryRef(_entry(mask)), scale), {})
    tails = []
    real = nt.norm_tail_triton
    monkeypatch.setattr(nt, "norm_tail_triton", lambda *a: tails.append(len(a)) or real(*a))
    kernels.clear()
    got = lineage.evaluate(node)
    assert tails == [6] and kernels == []  # the tail kernel given the bits; no apply, no unpack
    assert _same(got, lineage._dropout_apply(nt.norm_tail_ref(x, rstd, w, torch.bfloat16, torch.float32), mask,
                                             scale))


def test_a_dropped_widened_input_is_widened_and_dropped_in_one_pass(kernels):
    mask, x = _mask(6 * 50, 10).view(6, 50), _x(6 * 50, 11).view(6, 50)
    x[0, 5] = 1e-30  # no bf16 subnormal (see above)
    x = x.bfloat16()
    cast = lineage.Replay(torch.Tensor.to, "to", (lineage.Const(x), torch.float32), {})
    node = lineage.DropoutApply(lineage._dropout_apply, "dropout_apply",
                                (cast, lineage.EntryRef(_entry(mask)), 2.5), {})
    kernels.clear()
    got = lineage.evaluate(node)
    assert kernels == ["apply"] and _same(got, x.float() * mask * 2.5)
