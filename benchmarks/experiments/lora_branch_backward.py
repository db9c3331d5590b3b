"""What the LoRA branch's backward costs on the device, and a bound on what reading it in 16 bits would save
(session 44).

peft keeps a 16-bit model's adapters in fp32, so every LoRA linear's backward works in fp32 over the whole
activation: the scaled output gradient ``gl = grad * s`` (T x out), the input rebuilt wide (``xf``, T x in; a
replayed step decodes it straight to fp32), four skinny fp32 GEMMs (``gl @ B``, ``glᵀ @ h``, ``gh @ A``, ``ghᵀ @ xf``)
and the cast of the input's gradient back to 16 bits. ``kernel_diff.py`` put the fp32 GEMMs alone at 11 ms of a
56 ms ``intra_inter@2`` backward at 4x1024 (session 44). Per linear shape this times, with CUDA events (medians):

* ``fp32 path``: the sequence a replayed step runs now, pass by pass (``scaled_grad`` as the fused sum's backward
  makes it, the widening, the four GEMMs, the cast);
* ``16-bit reads``: the same four products as bf16 GEMMs straight from ``grad`` and ``x`` (``s`` folded into a
  16-bit ``B``): not the same numbers (bf16 operands where peft has fp32), only the bytes a kernel that reads the
  16-bit tensors and accumulates in fp32 would move; its time is a bound on what such a kernel could save.

Totals are per step of ``tools/bench_step.py``'s model (per layer q, k, v, o at 4096 -> 4096, gate and up at
4096 -> 11008, down at 11008 -> 4096; ``--layers`` of them), with the bytes each path moves by count.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/lora_branch_backward.py
    python benchmarks/experiments/lora_branch_backward.py --device cpu --tokens 64 --hidden 64 --intermediate 96
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks.kernels.lora_sum import scaled_grad  # noqa: E402
from ab_setup import layer_linears, median_ms as _median_ms  # noqa: E402

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


# A prototype of the fused backward (not the library's): two passes, fp32 accumulation, no atomics (each partial sum
# has its own slot, summed after), so the same bits every run. PREC: tl.dot's input precision for fp32 operands.
@triton.jit
def _grad_rows_kernel(g, b, gh, T, O, s, SPAN: tl.constexpr, R: tl.constexpr, BT: tl.constexpr, BO: tl.constexpr,
                      PREC: tl.constexpr):
    """gh[split, rows, :] = s * g[rows, cols] @ b[cols, :]: program (row block, column split)."""
    pt, po = tl.program_id(0), tl.program_id(1)
    rows = pt * BT + tl.arange(0, BT)
    r = tl.arange(0, R)
    acc = tl.zeros((BT, R), tl.float32)
    # this split's columns: [po * SPAN, (po + 1) * SPAN); SPAN compiled in (the interpreter loops to no runtime bound)
    for k in range(0, SPAN, BO):
        cols = po * SPAN + k + tl.arange(0, BO)
        gt = tl.load(g + rows[:, None] * O + cols[None, :], mask=(rows[:, None] < T) & (cols[None, :] < O), other=0.0)
        bt = tl.load(b + cols[:, None] * R + r[None, :], mask=cols[:, None] < O, other=0.0)
        acc += tl.dot(gt.to(tl.float32), bt, input_precision=PREC)
    tl.store(gh + po * T * R + rows[:, None] * R + r[None, :], acc * s, mask=rows[:, None] < T)


@triton.jit
def _grad_cols_kernel(g, h, out, T, O, s, SPAN: tl.constexpr, R: tl.constexpr, BT: tl.constexpr, BO: tl.constexpr,
                      PREC: tl.constexpr):
    """out[split, cols, :] = s * g[rows, cols]ᵀ @ h[rows, :]: program (column block, row split)."""
    po, pt = tl.program_id(0), tl.program_id(1)
    cols = po * BO + tl.arange(0, BO)
    r = tl.arange(0, R)
    acc = tl.zeros((BO, R), tl.float32)
    for k in range(0, SPAN, BT):
        rows = pt * SPAN + k + tl.arange(0, BT)
        gt = tl.load(g + rows[:, None] * O + cols[None, :], mask=(rows[:, None] < T) & (cols[None, :] < O), other=0.0)
        ht = tl.load(h + rows[:, None] * R + r[None, :], mask=rows[:, None] < T, other=0.0)
        acc += tl.dot(tl.trans(gt.to(tl.float32)), ht, input_precision=PREC)
    tl.store(out + pt * O * R + cols[:, None] * R + r[None, :], acc * s, mask=cols[:, None] < O)


@triton.jit
def _input_kernel(x, gh, a, dx, ga, T, I, SPAN: tl.constexpr, R: tl.constexpr, BT: tl.constexpr, BI: tl.constexpr,
                  PREC: tl.constexpr):
    """dx[rows, cols] = (gh @ a)[rows, cols] in bf16, and ga[split, :, cols] = gh[rows]ᵀ @ x[rows, cols]:
    program (column block, row split); x read once, dx written once."""
    pi, pt = tl.program_id(0), tl.program_id(1)
    cols = pi * BI + tl.arange(0, BI)
    r = tl.arange(0, R)
    at = tl.load(a + r[:, None] * I + cols[None, :], mask=cols[None, :] < I, other=0.0)
    acc = tl.zeros((R, BI), tl.float32)
    for k in range(0, SPAN, BT):
        rows = pt * SPAN + k + tl.arange(0, BT)
        m = (rows[:, None] < T) & (cols[None, :] < I)
        ght = tl.load(gh + rows[:, None] * R + r[None, :], mask=rows[:, None] < T, other=0.0)
        xt = tl.load(x + rows[:, None] * I + cols[None, :], mask=m, other=0.0).to(tl.float32)
        acc += tl.dot(tl.trans(ght), xt, input_precision=PREC)
        tl.store(dx + rows[:, None] * I + cols[None, :], tl.dot(ght, at, input_precision=PREC).to(tl.bfloat16), mask=m)
    tl.store(ga + pt * R * I + r[:, None] * I + cols[None, :], acc, mask=cols[None, :] < I)


def fused_backward(g, x, a, b, h, s, prec="ieee", splits=8):
    """(gA, gB, dx) of one LoRA branch from bf16 ``g`` and ``x`` (fp32 ``a`` R x I, ``b`` O x R, ``h`` T x R)."""
    t, o = g.shape
    i, r = x.shape[1], a.shape[0]
    bt, bo, bi = 64, 64, 64
    span_o, span_t = triton.cdiv(triton.cdiv(o, bo), splits) * bo, triton.cdiv(triton.cdiv(t, bt), splits) * bt
    gh = torch.empty(splits, t, r, device=g.device)
    _grad_rows_kernel[(triton.cdiv(t, bt), splits)](g, b, gh, t, o, s, SPAN=span_o, R=r, BT=bt, BO=bo, PREC=prec)
    gh = gh.sum(0)
    gb = torch.empty(splits, o, r, device=g.device)
    _grad_cols_kernel[(triton.cdiv(o, bo), splits)](g, h, gb, t, o, s, SPAN=span_t, R=r, BT=bt, BO=bo, PREC=prec)
    dx = torch.empty(t, i, device=g.device, dtype=torch.bfloat16)
    ga = torch.empty(splits, r, i, device=g.device)
    _input_kernel[(triton.cdiv(i, bi), splits)](x, gh, a, dx, ga, t, i, SPAN=span_t, R=r, BT=bt, BI=bi, PREC=prec)
    return ga.sum(0), gb.sum(0), dx


p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda")
p.add_argument("--tokens", type=int, default=4096)
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--intermediate", type=int, default=11008)
p.add_argument("--rank", type=int, default=16)
p.add_argument("--layers", type=int, default=8)
p.add_argument("--reps", type=int, default=30)
p.add_argument("--precisions", default="ieee,tf32x3", help="tl.dot input precisions of the fused prototype")
args = p.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
T, R, S = args.tokens, args.rank, 2.0
PRECISIONS = args.precisions.split(",")


def median_ms(fn) -> float:
    return _median_ms(fn, args.reps, cuda, 3)


def one_shape(n_in: int, n_out: int) -> dict:
    g = torch.randn(T, n_out, device=dev, dtype=torch.bfloat16)
    x = torch.randn(T, n_in, device=dev, dtype=torch.bfloat16)
    a = torch.randn(R, n_in, device=dev) / n_in ** 0.5
    b = torch.randn(n_out, R, device=dev) / R ** 0.5
    h = x.float() @ a.t()
    sb16, h16, a16 = (b * S).bfloat16(), h.bfloat16(), a.bfloat16()
    parts = {
        "scaled grad": lambda: scaled_grad(g, S),
        "widen x": lambda: x.float(),
    }
    gl, xf = scaled_grad(g, S), x.float()
    gh = gl @ b
    parts["4 fp32 GEMMs"] = lambda: (gl @ b, gl.t() @ h, gh @ a, gh.t() @ xf)
    gxf = gh @ a
    parts["cast dx"] = lambda: gxf.bfloat16()

    def fp32_path():
        gl_, xf_ = scaled_grad(g, S), x.float()
        gh_ = gl_ @ b
        return gl_.t() @ h, (gh_ @ a).bfloat16(), gh_.t() @ xf_

    def reads16():
        gh_ = g @ sb16
        return g.t() @ h16, gh_ @ a16, gh_.t() @ x

    out = {k: median_ms(f) for k, f in parts.items()}
    out["fp32 path"] = median_ms(fp32_path)
    out["16-bit reads"] = median_ms(reads16)
    ref = (gh.t() @ xf, gl.t() @ h, gxf.bfloat16())
    for prec in PRECISIONS:
        got = fused_backward(g, x, a, b, h, S, prec)
        out[f"err {prec}"] = max(float((u.float() - v.float()).abs().max() / v.float().abs().max())
                                 for u, v in zip(got[:2], ref[:2]))
        ulp = torch.exp2(torch.floor(torch.log2(ref[2].float().abs().clamp_min(1e-30))) - 7)
        out[f"dx bits {prec}"] = float((got[2] != ref[2]).float().mean())
        out[f"dx ulps {prec}"] = float(((got[2].float() - ref[2].float()).abs() / ulp).max())
        out[f"fused {prec}"] = median_ms(lambda: fused_backward(g, x, a, b, h, S, prec))
    # bytes by count: fp32 path = scaled grad (2 in, 4 out) + widen (2, 4) + GEMM reads of gl twice, xf once,
    # gh @ A's fp32 output, and the cast (4 in, 2 out); 16-bit reads = grad twice, x once, dx written once
    out["fp32 bytes"] = T * (6 * n_out + 6 * n_in + 8 * n_out + 4 * n_in + 4 * n_in + 6 * n_in)
    out["16-bit bytes"] = T * (4 * n_out + 2 * n_in + 2 * n_in)
    return out


H, I = args.hidden, args.intermediate
shapes = layer_linears(H, I)
rows = {s: one_shape(*s) for s in shapes}
name = torch.cuda.get_device_name(dev) if cuda else "cpu"
print(f"{name} | torch {torch.__version__} | T={T}, r={R}; medians of {args.reps}, ms")
keys = ["scaled grad", "widen x", "4 fp32 GEMMs", "cast dx", "fp32 path", "16-bit reads"]
keys += [f"fused {prec}" for prec in PRECISIONS]
print("| in -> out | per layer | " + " | ".join(keys) + " | fp32 path GB/s | 16-bit GB/s |")
print("|---" * (len(keys) + 4) + "|")
total = dict.fromkeys(keys + ["fp32 bytes", "16-bit bytes"], 0.0)
for (n_in, n_out), k in shapes.items():
    r = rows[(n_in, n_out)]
    for key in total:
        total[key] += k * args.layers * r[key]
    print(f"| {n_in} -> {n_out} | {k} | " + " | ".join(f"{r[key]:.3f}" for key in keys)
          + f" | {r['fp32 bytes'] / r['fp32 path'] / 1e6:.0f} | {r['16-bit bytes'] / r['16-bit reads'] / 1e6:.0f} |")
for prec in PRECISIONS:
    print(f"fused {prec}: largest error of gA / gB against the fp32 path, relative to its largest element: "
          f"{max(r[f'err {prec}'] for r in rows.values()):.2e}; dx elements whose bf16 bits differ: "
          f"{max(r[f'dx bits {prec}'] for r in rows.values()):.2%}, by at most "
          f"{max(r[f'dx ulps {prec}'] for r in rows.values()):.0f} bf16 ulp")
print(f"| a step ({args.layers} layers) | | " + " | ".join(f"{total[key]:.2f}" for key in keys)
      + f" | {total['fp32 bytes'] / 1e9:.1f} GB | {total['16-bit bytes'] / 1e9:.1f} GB |")
