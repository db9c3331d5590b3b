"""The cross-entropy head's log-softmax from 16-bit logits (kernels/log_softmax.py, lineage.LogSoftmaxWide) under
TRITON_INTERPRET=1.

On a GPU the kernel gives torch's fp32 ``log_softmax`` bits (``tools/check_log_softmax.py``) because it runs torch's
additions in torch's order; that order is written out in plain PyTorch as ``log_softmax_ordered``. Here the kernel
must give that reference's bits with the interpreter's ``exp``/``log`` (numpy's) passed to it, and the reference
must be a log-softmax; and the recipe that uses the kernel must compute what the op-by-op recipe did.
"""

from __future__ import annotations

import dataclasses
import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import hyclora_hooks as hyclora  # noqa: E402
from hyclora_hooks import engine, lineage, models  # noqa: E402
from hyclora_hooks.kernels import log_softmax as ls  # noqa: E402
from hyclora_hooks.policy import load_policy  # noqa: E402

from conftest import cosine, step  # noqa: E402
from test_inter import KEEP_POLICIES  # noqa: E402
from test_norm_tail import _same  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
SHORTEST = 12256  # the shortest row torch's block kernel takes (48 KiB of shared memory a block)


def _np(fn):
    return lambda t: torch.from_numpy(fn(t.numpy()))


def _logits(rows: int, v: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, v, generator=gen) * 3).to(dtype)
    x[0].fill_(0.0)
    x[1, : v // 2] = float("-inf")
    x[2, 7] = 60000.0
    if rows > 4:
        x[3].fill_(float("-inf"))
        x[4, 5] = float("nan")
    return x


@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("shape", [(5, SHORTEST), (2, 3, 4096 * 3 + 1024 * 2 + 12), (3, 16384)])
def test_kernel_gives_the_ordered_references_bits(dtype, shape):
    x = _logits(math.prod(shape[:-1]), shape[-1], dtype).reshape(shape)
    assert ls.fusable(x)
    got = ls.log_softmax(x, backend="triton")
    want = ls.log_softmax_ordered(x, _np(np.exp), _np(np.log))
    assert got.dtype == FP32 and got.shape == x.shape and got.is_contiguous()
    assert _same(got, want)


def test_the_ordered_reference_is_a_log_softmax():
    x = _logits(6, 4096 * 4 + 1000, BF16)[:3]  # rows with finite values (row 1 half -inf)
    want = torch.log_softmax(x.double(), -1)
    got = ls.log_softmax_ordered(x)
    fin = torch.isfinite(want)
    assert torch.equal(fin, torch.isfinite(got))
    assert torch.allclose(got[fin].double(), want[fin], rtol=1e-6, atol=2e-5)
    # every element's term is in the sum once: a row's probabilities add to one
    assert torch.allclose(got.double().exp().sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-5)


def test_rows_the_kernel_does_not_reproduce_go_to_torch():
    x = _logits(4, 32000, BF16)
    assert ls.fusable(x) and ls.fusable(x.view(2, 2, 32000), dim=2)
    assert not ls.fusable(x.float())  # fp32 logits: nothing to widen
    assert not ls.fusable(x[:, :SHORTEST - 4])  # not contiguous
    assert not ls.fusable(x[:, :SHORTEST - 4].contiguous())  # torch's shared-memory kernel sums in another order
    assert not ls.fusable(x[:, :SHORTEST + 2].contiguous())  # rows not 16-byte aligned
    assert not ls.fusable(x, dim=0)
    y = x[:, :1000].contiguous()
    assert _same(ls.log_softmax(y, backend="triton"), torch.log_softmax(y.float(), -1))


# intra_inter as it was before session 32: the head replayed in backward, not fused (NOTE [Fused head])
REPLAYED_HEAD = dataclasses.replace(load_policy("intra_inter"), fuse_head=False)


def _head_nodes(model, batch, monkeypatch) -> list:
    """The recipes the engine builds for the head's log-softmax in one step of ``model`` (``REPLAYED_HEAD``)."""
    nodes = []
    real = engine.Compressor._recipe

    def spy(self, t, site, node):
        if site.op_class == "cross_entropy" and site.role == "log_softmax":
            nodes.append(node)
        return real(self, t, site, node)

    with monkeypatch.context() as patch:
        patch.setattr(engine.Compressor, "_recipe", spy)
        step(model, batch, lambda: hyclora.compress(REPLAYED_HEAD))
    return nodes


def test_the_head_is_rebuilt_from_its_16_bit_logits_with_the_same_values(monkeypatch):
    model = models.add_lora(models.tiny_llama(vocab=256))
    batch = models.random_batch(256, batch=2, seq=16)
    (node,) = _head_nodes(model, batch, monkeypatch)
    assert type(node) is lineage.LogSoftmaxWide
    # Hugging Face's ``logits.float().view(-1, V)``: the view is kept, on the bf16 logits, the casts are not
    assert node.args[0].name == "view" and node.args[0].args[0].name == "linear" and node.args[1] == 1
    _, fused, _ = step(model, batch, lambda: hyclora.compress(REPLAYED_HEAD))
    monkeypatch.setattr(lineage, "fuse_log_softmax", lambda n: n)
    _, op_by_op, _ = step(model, batch, lambda: hyclora.compress(REPLAYED_HEAD))
    assert torch.equal(fused, op_by_op)  # on CPU both are torch's log_softmax of the widened logits


def test_a_lossless_policy_runs_the_kernel_for_the_head(monkeypatch):
    model = models.add_lora(models.tiny_llama(vocab=SHORTEST, layers=1))
    batch = models.random_batch(SHORTEST, batch=2, seq=8)
    _, exact, _ = step(model, batch)
    calls = []
    monkeypatch.setattr(ls, "use_triton", lambda t: True)
    real = ls.log_softmax_triton
    monkeypatch.setattr(ls, "log_softmax_triton", lambda x: calls.append(x.shape) or real(x))
    _, got, _ = step(model, batch, lambda: hyclora.compress(KEEP_POLICIES["one-rule"]))
    assert calls == [(16, SHORTEST)]
    # numpy's exp/log, not torch's CPU ones: the head's gradient moves in its last bits only
    assert cosine(got, exact) > 0.999999


def test_only_casts_to_fp32_under_views_that_index_elements_are_looked_through():
    x = lineage.Const(torch.zeros(2, 4, dtype=BF16))

    def op(func, name, *args):
        return lineage.Replay(func, name, args, {})

    def head(inner):
        return op(torch.log_softmax, "log_softmax", op(torch.Tensor.to, "to", inner, FP32), 1)

    wide = op(torch.Tensor.float, "float", x)
    fused = lineage.fuse_log_softmax(head(op(torch.Tensor.view, "view", wide, -1, 4)))
    assert type(fused) is lineage.LogSoftmaxWide and fused.args[0].args[0] is x
    strided = head(op(torch.Tensor.as_strided, "as_strided", wide, (8,), (1,)))  # reads storage, not elements
    assert type(lineage.fuse_log_softmax(strided).args[0].args[0]) is lineage.Replay  # only the top cast dropped
    assert lineage.fuse_log_softmax(strided).args[0].name == "as_strided"
    narrowed = head(op(torch.Tensor.to, "to", op(torch.Tensor.float, "float", x), BF16))
    assert lineage.fuse_log_softmax(narrowed).args[0].name == "to"  # the bf16 rounding stays in the recipe
    assert lineage.evaluate(lineage.fuse_log_softmax(narrowed)).dtype == FP32
    half_out = op(torch.log_softmax, "log_softmax", op(torch.Tensor.to, "to", wide, FP16), 1)
    assert lineage.fuse_log_softmax(half_out) is half_out  # the kernel writes fp32 only: an fp16 result stays as is
