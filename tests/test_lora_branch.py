"""A LoRA linear's branch and sum as one node (NOTE [LoRA branch] in hyclora_hooks/lora_branch.py;
kernels/lora_branch.py under TRITON_INTERPRET=1): the kernels against fp64 products, the node's forward and saved
tensors against peft's ops', its reference backward against autograd's bit for bit, its kernel backward within
rounding, and replayed steps that run it against deciding copies."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import hyclora_hooks as hyclora  # noqa: E402
from hyclora_hooks import lora_branch, lora_sum  # noqa: E402
from hyclora_hooks.kernels import lora_branch as kernels  # noqa: E402
from hyclora_hooks.models import add_lora, graph_nodes, lora_grads, random_batch, tiny_llama  # noqa: E402
from test_lora_sum import node_step  # noqa: E402

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def _operands(t: int, i: int, o: int, r: int, dtype=BF16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randn(t, o, generator=gen).to(dtype)
    x = torch.randn(t, i, generator=gen).to(dtype)
    a = torch.randn(r, i, generator=gen) / i ** 0.5
    b = torch.randn(o, r, generator=gen) / r ** 0.5
    return grad, x, a, b


@pytest.mark.parametrize("t,i,o,r", [(130, 96, 200, 16), (64, 64, 64, 8), (70, 40, 129, 12), (65, 130, 33, 32)])
@pytest.mark.parametrize("dtype", [BF16, FP16])
def test_kernels_give_the_products_within_fp32_rounding(t, i, o, r, dtype):
    """``branch_grads`` against the same products in fp64: gA and gB to fp32 rounding, dx to one rounding of its
    dtype (ragged tiles, ranks below 16 or no power of two zero-padded)."""
    grad, x, a, b = _operands(t, i, o, r, dtype)
    xf = x.float()
    h = xf @ a.t()
    dx, ga, gb = kernels.branch_grads(grad, xf, h, a, b, 0.75, dtype)
    gh = grad.double() * 0.75 @ b.double()
    want = (gh @ a.double(), gh.t() @ xf.double(), (grad.double() * 0.75).t() @ h.double())
    assert dx.dtype == dtype and dx.shape == (t, i) and ga.shape == (r, i) and gb.shape == (o, r)
    for got, ref in zip((ga, gb), want[1:]):
        assert ((got.double() - ref).abs().max() / ref.abs().max()) < 1e-5
    eps = torch.finfo(dtype).eps
    assert ((dx.double() - want[0]).abs() <= eps * want[0].abs() + 1e-6 * want[0].abs().max()).all()


@pytest.mark.parametrize("t,i,o,r,dtype", [(37, 70, 90, 16, BF16), (64, 128, 96, 8, FP16), (5, 64, 64, 32, FP32),
                                           (130, 48, 200, 16, BF16)])
def test_forward_kernel_gives_pefts_values_within_fp32_rounding(t, i, o, r, dtype):
    """NOTE [LoRA branch] rule 6: ``branch_forward``'s ``h`` and output against peft's ops (``branch_forward_ref``):
    ``h`` to fp32 rounding, the output to one rounding of its dtype (an fp32 sum rounds to a neighbouring value where
    it falls near a tie), any rank (padded in the kernel), ragged tiles, a base in any of the dtypes."""
    grad, x, a, b = _operands(t, i, o, r, BF16 if dtype == FP32 else dtype)
    base = torch.randn(t, o, generator=torch.Generator().manual_seed(3)).to(dtype)
    out, h = kernels.branch_forward(x, a, b, base, 1.5)
    want_out, want_h = kernels.branch_forward_ref(x, a, b, base, 1.5)
    assert out.dtype == dtype and out.shape == want_out.shape and h.shape == (t, r) and h.is_contiguous()
    assert ((h - want_h).abs().max() / want_h.abs().max()) < 1e-5
    ulp = {BF16: 2 ** -7, FP16: 2 ** -10, FP32: 2 ** -22}[dtype]
    assert ((out.float() - want_out.float()).abs() <= ulp * want_out.float().abs() + 1e-6).all()


def test_kernels_compute_only_what_is_needed():
    grad, x, a, b = _operands(80, 48, 72, 16)
    xf = x.float()
    h = xf @ a.t()
    full = kernels.branch_grads(grad, xf, h, a, b, 2.0, BF16)
    for need in [(True, False, False), (False, True, False), (False, False, True), (True, True, False)]:
        got = kernels.branch_grads(grad, xf, h, a, b, 2.0, BF16, need)
        for g, f, n in zip(got, full, need):
            assert (g is None) != n
            if n:
                assert torch.equal(g, f)


def _peft_branch(base, x, a, b, s):
    """peft's ops on the plain path with one adapter, its sum fused (what a lean body ran before the node)."""
    lora = nn.functional.linear(nn.functional.linear(x.to(a.dtype), a), b)
    return lora_sum.apply(base, lora, s)


def _leaves(grads: tuple):
    base = torch.randn(2, 9, 24).to(BF16)
    x = torch.randn(2, 9, 40).to(BF16)
    a, b = torch.randn(8, 40) / 6, torch.randn(24, 8) / 3
    return [t.requires_grad_(g) for t, g in zip((base, x, a, b), grads)]


@pytest.mark.parametrize("passing", [True, False])
@pytest.mark.parametrize("grads", [(True, True, True, True), (False, False, True, True), (True, True, False, True),
                                   (False, True, True, False)])
def test_the_node_saves_what_pefts_ops_save(grads, passing, monkeypatch):
    """Forward bits, and the saved tensors' order, shapes, strides, dtypes and requires_grad, equal to peft's ops'
    (what a replayed unit's records check: NOTE [LoRA branch] rule 2), less the adapters' views where a replay
    passes over their records (``PASS_PARAMETERS``)."""
    monkeypatch.setattr(lora_branch, "PASS_PARAMETERS", passing)
    base, x, a, b = _leaves(grads)

    def meta(t):
        return t.shape, t.stride(), t.dtype, t.requires_grad, any(t._base is p for p in (a, b))

    def saves(fn):
        seen = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(meta(t)) or t, lambda t: t):
            out = fn()
        return out, seen

    want, want_saves = saves(lambda: _peft_branch(base, x, a, b, 2.0))
    got, got_saves = saves(lambda: lora_branch.apply(base, x, a, b, 2.0))
    if passing:
        want_saves = [s for s in want_saves if not s[-1]]
    assert torch.equal(got, want) and got_saves == want_saves and want_saves


@pytest.mark.parametrize("grads", [(True, True, True, True), (False, False, True, True), (True, True, False, True),
                                   (False, True, True, False)])
def test_the_reference_backward_gives_autograds_bits(grads, monkeypatch):
    monkeypatch.setattr(lora_branch, "BACKWARD", "ref")
    base, x, a, b = _leaves(grads)
    incoming = torch.randn(2, 9, 24).to(BF16)
    inputs = [t for t in (base, x, a, b) if t.requires_grad]
    want = torch.autograd.grad(_peft_branch(base, x, a, b, 0.5), inputs, incoming)
    out = lora_branch.apply(base, x, a, b, 0.5)
    assert type(out.grad_fn).__name__ == "_LoraBranchBackward"
    got = torch.autograd.grad(out, inputs, incoming)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and torch.equal(g, w)


def test_the_kernel_backward_is_autograds_within_rounding(monkeypatch):
    monkeypatch.setattr(lora_branch, "BACKWARD", "triton")
    base, x, a, b = _leaves((True, True, True, True))
    incoming = torch.randn(2, 9, 24).to(BF16)
    want = torch.autograd.grad(_peft_branch(base, x, a, b, 0.5), (base, x, a, b), incoming)
    got = torch.autograd.grad(lora_branch.apply(base, x, a, b, 0.5), (base, x, a, b), incoming)
    assert torch.equal(got[0], want[0])  # the base's gradient is the incoming one
    for g, w in zip(got[1:], want[1:]):
        assert g.dtype == w.dtype and ((g.float() - w.float()).abs().max() / w.float().abs().max()) < 1e-2


def test_retain_graph_runs_the_backward_twice():
    base, x, a, b = _leaves((False, True, True, True))
    out = lora_branch.apply(base, x, a, b, 2.0)
    first = torch.autograd.grad(out.float().sum(), (x, a, b), retain_graph=True)
    second = torch.autograd.grad(out.float().sum(), (x, a, b))
    assert all(torch.equal(f, s) for f, s in zip(first, second))


def _pair(layers: int, adjust=None):
    """A bf16 tiny Llama with rank-8 adapters in training mode (changed by ``adjust`` if given), a deep copy of it
    to step beside it, and a batch."""
    on = add_lora(tiny_llama(vocab=256, dtype=BF16, use_cache=False, layers=layers), r=8)
    on.train()
    if adjust is not None:
        adjust(on)
    return on, copy.deepcopy(on), random_batch(256, batch=2, seq=16)


def _step(model, batch, replay):
    return node_step(model, batch, replay, "_LoraBranchBackward")


@pytest.mark.parametrize("backward", ["auto", "triton"])
@pytest.mark.parametrize("enabled", [True, False])
def test_replayed_steps_run_the_node_with_the_deciding_copys_packs(backward, enabled, monkeypatch):
    """Replayed decoder layers' LoRA linears (bf16 model, fp32 adapters) become one node each and replay every pack
    with the deciding copy's stored bytes; the CPU's reference backward gives its gradients bit for bit, the kernels
    within rounding. Off, no node is made."""
    monkeypatch.setattr(lora_branch, "ENABLED", enabled)
    monkeypatch.setattr(lora_branch, "BACKWARD", backward)
    monkeypatch.setattr(lora_branch, "FORWARD", backward)  # rule 6: the forward kernel with the backward's
    on, off, batch = _pair(3)
    linears = sum(type(m).__name__ == "Linear" and hasattr(m, "lora_A") for m in on.modules())
    for step in range(3):  # records, then replays
        got, nodes, ctx = _step(on, batch, True)
        want, none, ref = _step(off, batch, False)
        assert none == 0 and ctx.report().stored_bytes == ref.report().stored_bytes
        if step == 0 or backward == "auto":
            assert torch.equal(got, want)
        else:
            assert ((got - want).abs().max() / want.abs().max()) < 2e-2
            assert torch.nn.functional.cosine_similarity(got, want, dim=0) > 0.9999
    assert ctx.replayed_units > 0 and ctx.replayed_packs == ctx.report().packs
    assert nodes == (linears if enabled else 0)


def _recorded_decodes(monkeypatch) -> list:
    """``(narrow, readers, dtype)`` of every entry a LoRA linear saved decoded from now on (each decoded once, as
    without the record; a norm node's input counts as read narrow too: NOTE [Norm node])."""
    from hyclora_hooks import engine

    seen, real = [], engine.Entry.decode

    def decode(self):
        out = real(self)
        if self.site is None or ".lora_" in self.site.module:
            seen.append((self.narrow, self.readers, out.dtype))
        return out

    monkeypatch.setattr(engine.Entry, "decode", decode)
    return seen


@pytest.mark.parametrize("backward", ["auto", "triton"])
def test_the_nodes_input_decodes_in_16_bits_with_the_same_gradients(backward, monkeypatch):
    """Rule 5: in replayed steps the node's saved fp32 input decodes as the 16-bit values its recipe widens (after
    the norms, the attention, SwiGLU), each shared entry once; the LoRA gradients are the bits of the fp32 decode's
    (``NARROW_INPUT`` off), for the reference backward and the kernels alike. Deciding steps decode it in fp32."""
    monkeypatch.setattr(lora_branch, "BACKWARD", backward)
    monkeypatch.setattr(lora_branch, "FORWARD", backward)  # rule 6: the forward kernel with the backward's
    decodes = _recorded_decodes(monkeypatch)
    on, off, batch = _pair(3)
    for step in range(3):  # records, then replays
        monkeypatch.setattr(lora_branch, "NARROW_INPUT", True)
        decodes.clear()
        got, nodes, ctx = _step(on, batch, True)
        narrow = [dtype for n, _, dtype in decodes if n]
        monkeypatch.setattr(lora_branch, "NARROW_INPUT", False)
        want, _, _ = _step(off, batch, True)
        assert torch.equal(got, want)
        if step == 0:
            assert nodes == 0 and narrow == []
        else:  # per layer one input for q, k and v, one for o, one for gate and up, one for down
            assert nodes > 0 and narrow == [BF16] * 4 * 3


@pytest.mark.parametrize("forward", ["auto", "triton"])
def test_an_input_another_reader_takes_decodes_in_fp32(forward, monkeypatch):
    """Rule 5 holds an entry to 16 bits only where every reader is a node: with k_proj's ``lora_A`` in a transposed
    layout (peft's ops, rule 4), the input q, k and v share is read by peft's product too and decodes in fp32, the
    others' in 16 bits; the gradients are the bits of a step with every input in fp32. With the forward kernel, q's
    and v's nodes save the 16-bit input for that entry (rule 7) and read its fp32 decode all the same."""
    monkeypatch.setattr(lora_branch, "FORWARD", forward)
    decodes = _recorded_decodes(monkeypatch)
    def transpose_k_a(model):
        for layer in model.base_model.model.model.layers:
            a = layer.self_attn.k_proj.lora_A["default"]
            a.weight = nn.Parameter(a.weight.detach().t().contiguous().t())

    on, off, batch = _pair(2, transpose_k_a)
    for step in range(3):
        monkeypatch.setattr(lora_branch, "NARROW_INPUT", True)
        decodes.clear()
        got, _, _ = _step(on, batch, True)
        monkeypatch.setattr(lora_branch, "NARROW_INPUT", False)
        want, _, _ = _step(off, batch, True)
        assert torch.equal(got, want)
        if step:  # per layer: q/k/v's input, read by two nodes and peft's product, in fp32; o's, gate/up's, down's
            assert sorted((n, r, d) for n, r, d in decodes if n) == sorted([(2, 3, FP32)] * 2 + [(1, 1, BF16)] * 4
                                                                          + [(2, 2, BF16)] * 2)


class _CountWidenings(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the copies of a 16-bit tensor to fp32 run under it."""

    def __init__(self):
        super().__init__()
        self.copies = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and args[0].dtype in (BF16, FP16) and out.dtype == FP32:
            self.copies += 1
        return out


def _widening_step(model, batch, preset):
    """One ``preset``@2 step: (the LoRA gradients, fp32 copies its forward made, branch nodes, its report)."""
    torch.manual_seed(0)
    with _CountWidenings() as count:
        with hyclora.compress(preset, bits=2) as ctx:
            loss = model(**batch).loss
    copies = count.copies
    nodes = graph_nodes(loss, "_LoraBranchBackward")
    loss.backward()
    grads = lora_grads(model)
    model.zero_grad(set_to_none=True)
    return grads, copies, nodes, ctx


@pytest.mark.parametrize("preset", ["intra_inter", "intra"])
def test_the_node_saves_its_16_bit_input_for_the_fp32_copy(preset, monkeypatch):
    """Rule 7: with the forward kernel, replayed steps' nodes save their 16-bit input where the record is a widening
    recipe (an inter policy's), one fp32 copy fewer a LoRA linear in the forward, with the gradients, packs replayed
    and report of a step that makes the copies (``SAVE_16BIT_INPUT`` off), bit for bit; under ``intra`` the record
    codes the copy, which is then made as before."""
    monkeypatch.setattr(lora_branch, "FORWARD", "triton")
    monkeypatch.setattr(lora_branch, "BACKWARD", "triton")
    on, off, batch = _pair(3)
    for step in range(3):  # records, then replays
        monkeypatch.setattr(lora_branch, "SAVE_16BIT_INPUT", True)
        got, fewer, nodes, ctx = _widening_step(on, batch, preset)
        monkeypatch.setattr(lora_branch, "SAVE_16BIT_INPUT", False)
        want, copies, _, ref = _widening_step(off, batch, preset)
        assert torch.equal(got, want)
        assert ctx.replayed_packs == ref.replayed_packs and ctx.report().packs == ref.report().packs
        mine, theirs = ctx.report(), ref.report()
        assert (mine.activation_bytes, mine.stored_bytes, mine.by_op) == \
            (theirs.activation_bytes, theirs.stored_bytes, theirs.by_op)
        assert copies - fewer == (nodes if step and preset == "intra_inter" else 0)
    assert nodes == 21 and ctx.replayed_packs == ctx.report().packs


def test_narrowed_recipes():
    """``lineage.narrowed``: a recipe that widens to fp32 under views loses the widening (the same values in 16 bits),
    ``as_strided`` of a value not laid from its storage's start widens it as recorded, anything else is None."""
    from hyclora_hooks import lineage

    x = torch.randn(6, 8).bfloat16()
    leaf = lineage.Const(x)
    wide = lineage.Replay(torch.Tensor.to, "to", (leaf,), {"dtype": FP32})
    strided = lineage.Replay(torch.as_strided, "as_strided", (wide, (8, 6), (1, 8), 0), {})
    for node in (wide, strided, lineage.Replay(torch.Tensor.reshape, "reshape", (strided, (48,)), {})):
        narrow = lineage.narrowed(node)
        got, want = lineage.evaluate(narrow), lineage.evaluate(node)
        assert got.dtype == BF16 and torch.equal(got.float(), want) and got.stride() == want.stride()
    assert lineage.narrowed(lineage.Replay(torch.Tensor.to, "to", (leaf,), {"dtype": FP16})) is None
    assert lineage.narrowed(lineage.Replay(torch.mul, "mul", (wide, 2.0), {})) is None
    assert lineage.narrowed(leaf) is None
    offset = lineage.Replay(torch.as_strided, "as_strided",
                            (lineage.Replay(torch.Tensor.to, "to", (lineage.Const(x[1:]),), {"dtype": FP32}),
                             (5, 8), (8, 1), 0), {})
    got = lineage.evaluate(lineage.narrowed(offset))  # x[1:] starts past its storage's start: widened as recorded
    assert got.dtype == FP32 and torch.equal(got, lineage.evaluate(offset))


@pytest.mark.parametrize("passing", [True, False])
def test_frozen_adapters_replay_every_pack(passing, monkeypatch):
    """Adapters frozen in part (a ``lora_B`` alone, both of a linear, ``lora_A`` alone): the node saves fewer
    tensors, and a replay passes over the parameter records it leaves after its last one too (rule 2), so every
    pack of every step replays, with the deciding copy's gradients bit for bit."""
    monkeypatch.setattr(lora_branch, "BACKWARD", "ref")
    monkeypatch.setattr(lora_branch, "PASS_PARAMETERS", passing)
    def freeze_some(model):
        layers = model.base_model.model.model.layers
        layers[1].self_attn.q_proj.lora_B["default"].weight.requires_grad_(False)
        for part in ("lora_A", "lora_B"):
            getattr(layers[1].mlp.up_proj, part)["default"].weight.requires_grad_(False)
        layers[2].self_attn.v_proj.lora_A["default"].weight.requires_grad_(False)

    on, off, batch = _pair(3, freeze_some)
    for step in range(3):
        got, nodes, ctx = _step(on, batch, True)
        want, _, _ = _step(off, batch, False)
        assert torch.equal(got, want) and (nodes > 0) == (step > 0)
    assert ctx.replayed_units > 0 and ctx.replayed_packs == ctx.report().packs


def test_dropout_keeps_the_branch_as_pefts_ops():
    model = add_lora(tiny_llama(vocab=256, dtype=BF16, use_cache=False, layers=2), dropout=0.1)
    model.train()
    batch = random_batch(256, batch=2, seq=16)
    for _ in range(2):
        _, nodes, ctx = _step(model, batch, True)
    assert ctx.replayed_units > 0 and nodes == 0


def test_non_contiguous_adapters_keep_the_branch_as_pefts_ops():
    """Rule 4: the kernels read the adapters row by row, so a LoRA linear whose ``lora_A`` weight is a transposed
    layout runs peft's ops (and still replays); the others still become nodes."""
    model = add_lora(tiny_llama(vocab=256, dtype=BF16, use_cache=False, layers=2))
    model.train()
    linears = [m for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A")]
    a = linears[0].lora_A["default"]
    a.weight = nn.Parameter(a.weight.detach().t().contiguous().t())
    assert not a.weight.is_contiguous()
    batch = random_batch(256, batch=2, seq=16)
    for _ in range(2):
        _, nodes, ctx = _step(model, batch, True)
    assert ctx.replayed_units > 0 and nodes == len(linears) - 1


def test_the_node_holds_no_saved_input_itself():
    """What the node saves lives as long as the saved-tensor hooks keep it: here they keep nothing, and the fp32 input
    is gone after the forward (saved as a leaf that requires grad, its gradient accumulator would hold it: every LoRA
    linear's until the backward). ``h`` (T x R) is such a leaf, held."""
    import gc
    import weakref

    base, x, a, b = _leaves((True, True, True, True))
    refs = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: refs.append((weakref.ref(t), t.shape)), lambda p: None):
        out = lora_branch.apply(base, x, a, b, 2.0)
    gc.collect()
    assert len(refs) == 2 and out.requires_grad  # the fp32 input and h (rule 2: no view of the adapters)
    assert [shape for ref, shape in refs if ref() is not None] == [(18, 8)]


@pytest.mark.parametrize("tiles", [(32, 64, 2), (64, 32, 3), (16, 16, 1), "mixed"])
def test_other_tiles_give_the_same_products(tiles, monkeypatch):
    """Tiles of other rows, columns and runs (``kernels.TILES``, as benchmarks/experiments/lora_branch_tiles.py sets
    them), the same for every pass or each pass its own: each reduction still covers every row and column once (rows
    and columns split apart), and the input pass reads the rows pass's slots whatever their number."""
    grad, x, a, b = _operands(150, 100, 170, 16)
    xf = x.float()
    h = xf @ a.t()
    want = kernels.branch_grads_ref(grad, xf, h, a, b, 1.5, BF16)
    own = {"rows": (32, 64, 2), "input": (64, 32, 3), "cols": (16, 16, 1)} if tiles == "mixed" else {}
    for name in ("rows", "cols", "input"):
        monkeypatch.setitem(kernels.TILES, name, own.get(name, tiles) + (4, 3))
    got = kernels.branch_grads(grad, xf, h, a, b, 1.5, BF16)
    for g, w in zip(got[1:], want[1:]):
        assert ((g - w).abs().max() / w.abs().max()) < 1e-5
    assert ((got[0].float() - want[0].float()).abs().max() / want[0].float().abs().max()) < 1e-2


def test_the_save_order_probe_holds_under_inference_mode():
    """The import-time probe of ``mm``'s save order gives the same answer when the package is imported inside
    ``torch.inference_mode()`` (where nothing is saved unless the probe leaves it)."""
    import subprocess
    import sys

    code = ("import torch\nwith torch.inference_mode():\n    from hyclora_hooks import lora_branch\n"
            "print(lora_branch._MAT2_FIRST)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == str(lora_branch._MAT2_FIRST) and lora_branch._MAT2_FIRST is lora_branch._mm_saves_mat2_first()


def test_each_launch_plan_serves_one_set_of_compile_time_values(monkeypatch):
    """NOTE [Direct launch] rule 1: ``branch_grads`` keys its launch plans by everything it compiles in (rank, tiles,
    dtype, what is needed), so a launcher cached for one rank or tile is never run for another (the interpreter takes
    no plan: this checks the keys themselves)."""
    seen: dict = {}

    def recording(kernel, grid, cache, args, meta):
        assert seen.setdefault(id(cache), (kernel, meta)) == (kernel, meta)
        kernel[grid](*args, **meta)

    monkeypatch.setattr(kernels, "launch", recording)
    for r, tiles in [(16, (64, 64, 4, 4, 3)), (32, (64, 64, 4, 4, 3)), (16, (32, 64, 2, 4, 3)),
                     (16, (64, 32, 3, 4, 3)), (16, (64, 32, 3, 8, 3)), (16, (64, 32, 3, 8, 2))]:
        for name in ("rows", "cols", "input"):
            monkeypatch.setitem(kernels.TILES, name, tiles)
        grad, x, a, b = _operands(70, 48, 40, r)
        for dtype, need in [(BF16, (True, True, True)), (FP16, (True, False, True)), (BF16, (False, True, False))]:
            xf = x.float()
            kernels.branch_grads(grad.to(dtype), xf, xf @ a.t(), a, b, 2.0, dtype, need)
    assert len(seen) > 12
