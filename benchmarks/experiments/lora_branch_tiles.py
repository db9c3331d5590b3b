"""Tiles of the LoRA branch's kernels (``kernels/lora_branch.py``), swept at the benchmark's shapes (sessions 44, 46).

Each pass (``rows``, ``cols``, ``input``; ``forward`` with ``--forward``) has its own tiles (``kernels.TILES``: rows
and columns of a tile, the run of tiles a program sums, warps, pipeline stages). For each pass named in ``--passes``
every setting of ``--settings`` is given to that pass alone, the others keeping theirs; ``branch_grads`` then runs
the three passes as the node runs them (a 16-bit gradient, the input as a replayed step unpacks it: fp32, or 16-bit
with ``--input-16``), is checked against ``branch_grads_ref`` (the largest difference of each result against its
largest element), and timed (CUDA events around replays of a CUDA graph of one call: the device's time, not the
host's, which set the per-call times of session 44), medians. A last row per token count gives each pass its
fastest setting whose error is no larger than the module's own tiles give. The products autograd's backward of
peft's ops runs (the node's ``"ref"`` backward) are timed in the same run as the baseline. ``--breakdown`` times the
module's tiles by what is computed, with the bytes moved; ``--forward`` times ``branch_forward`` against peft's ops.
Totals are per step of ``tools/bench_step.py``'s model (per layer q, k, v, o at 4096 -> 4096, gate and up at 4096 ->
11008, down at 11008 -> 4096; 8 layers).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192
    TRITON_INTERPRET=1 python benchmarks/experiments/lora_branch_tiles.py --device cpu --tokens 96 --hidden 64 \\
        --intermediate 96 --reps 1 --settings "64,64,8,4,3;32,64,2,4,3"
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks import lora_branch  # noqa: E402
from hyclora_hooks.kernels import lora_branch as kernels  # noqa: E402
from ab_setup import device_work as _device_work, layer_linears, median_ms as _median_ms  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda")
p.add_argument("--tokens", default="4096")
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--intermediate", type=int, default=11008)
p.add_argument("--rank", type=int, default=16)
p.add_argument("--layers", type=int, default=8)
p.add_argument("--reps", type=int, default=20)
p.add_argument("--passes", default="rows,cols,input")
p.add_argument("--breakdown", action="store_true",
               help="only the module's tiles, by what is computed: gB alone (the cols pass), dx alone (rows and "
                    "input passes), gA alone (the same two), all three; with the bytes each moves and their rate")
p.add_argument("--settings", default="64,64,4,4,3;64,64,2,4,3;64,64,1,4,3;64,64,8,4,3;32,64,4,4,3;128,64,4,4,3;"
                                     "128,64,2,8,3;64,128,2,4,3;64,128,4,8,3;32,128,4,4,3;64,64,4,4,2;64,64,4,4,4;"
                                     "128,128,2,8,3;64,64,4,8,3;64,256,1,8,3",
               help="rows,cols,iters,warps,stages; ...")
p.add_argument("--input-16", action="store_true",
               help="the input as a replayed step's node reads it since session 46: its 16-bit values (NOTE [LoRA "
                    "branch] rule 5), not widened to fp32")
p.add_argument("--forward", action="store_true",
               help="the forward pass instead (session 46: kernels.branch_forward against peft's ops as the node runs "
                    "them, the fp32 cast included in both; --settings then sweeps the 'forward' tiles, iters unused)")
p.add_argument("--prec", default="", help="tl.dot's input precision instead of the module's choice (tf32, ieee): "
               "how much of the time the three-product tf32x3 takes")
args = p.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
if args.prec:
    kernels._PRECISION[dev.index if cuda else None] = args.prec
S = 2.0


def median_ms(fn) -> float:
    return _median_ms(fn, args.reps, cuda, 2)


def operands(t: int, n_in: int, n_out: int):
    gen = torch.Generator(device=dev).manual_seed(t + n_in + n_out)
    g = torch.randn(t, n_out, device=dev, generator=gen).bfloat16()
    x = torch.randn(t, n_in, device=dev, generator=gen).bfloat16()
    a = torch.randn(args.rank, n_in, device=dev, generator=gen) / n_in ** 0.5
    b = torch.randn(n_out, args.rank, device=dev, generator=gen) / args.rank ** 0.5
    return g, x if args.input_16 else x.float(), x.float() @ a.t(), a, b


def run(ops: dict) -> tuple[float, float]:
    """(ms a step, largest relative error) of ``branch_grads`` with ``kernels.TILES`` as they are now."""
    err, total = 0.0, 0.0
    for s, k in shapes.items():
        g, xf, h, a, b = ops[s]
        got = kernels.branch_grads(g, xf, h, a, b, S, torch.bfloat16)
        ref = kernels.branch_grads_ref(g, xf, h, a, b, S, torch.bfloat16)
        err = max([err] + [float((u.float() - v.float()).abs().max() / v.float().abs().max())
                            for u, v in zip(got, ref)])
        total += k * args.layers * median_ms(device_work(lambda: kernels.branch_grads(g, xf, h, a, b, S,
                                                                                     torch.bfloat16)))
    return total, err


def device_work(fn):
    return _device_work(fn, dev)


H, I = args.hidden, args.intermediate
shapes = layer_linears(H, I)
settings = [tuple(int(v) for v in s.split(",")) for s in args.settings.split(";")]
own = dict(kernels.TILES)
name = torch.cuda.get_device_name(dev) if cuda else "cpu"
print(f"{name} | torch {torch.__version__} | r={args.rank}; medians of {args.reps}; ms a step of {args.layers} layers;"
      f" the module's tiles {own}")
if not args.breakdown:
    print("| tokens | pass | setting (rows, cols, iters, warps, stages) | ms a step | against autograd's products |"
          " largest error |")
    print("|---|---|---|---|---|---|")
def moved(t: int, n_in: int, n_out: int, need: tuple) -> int:
    """Bytes the passes read and write at least for ``need`` (the operands once, the results once; slots not
    counted): the 16-bit gradient once per pass that reads it, the input (fp32, or 16-bit with ``--input-16``),
    ``dx`` in 16 bits."""
    rows = need[0] or need[1]
    return 2 * t * n_out * (rows + need[2]) + (2 if args.input_16 else 4) * t * n_in * need[1] + 2 * t * n_in * need[0]


def breakdown(t: int, ops: dict) -> None:
    for label, need in (("gB (cols)", (False, False, True)), ("dx (rows, input)", (True, False, False)),
                        ("gA (rows, input)", (False, True, False)), ("all three", (True, True, True))):
        total, nbytes = 0.0, 0
        for s, k in shapes.items():
            g, xf, h, a, b = ops[s]
            total += k * args.layers * median_ms(device_work(lambda: kernels.branch_grads(
                g, xf, h, a, b, S, torch.bfloat16, need)))
            nbytes += k * args.layers * moved(t, *s, need)
        print(f"| {t} | {label} | {total:.2f} | {nbytes / 1e9:.2f} | {nbytes / total / 1e6:.0f} |")


def forward_run(ops: dict, kernel: bool) -> tuple[float, float]:
    """(ms a step, largest relative error of the output against peft's ops) of the node's forward: the fp32 cast it
    makes for its pack, then the kernel or peft's ops."""
    err, total = 0.0, 0.0
    for (n_in, n_out), k in shapes.items():
        g, x, h, a, b = ops[(n_in, n_out)]
        x = x if x.dtype != torch.float32 else x.bfloat16()
        base = g  # a 16-bit T x O tensor (the gradient's values stand in for the base layer's output)

        def fwd():  # as the node runs it: peft's products read its one cast (session 46's forward/ cast twice here)
            xf = x.to(torch.float32)
            return kernels.branch_forward(x, a, b, base, S) if kernel else kernels.branch_forward_ref(xf, a, b, base, S)
        got, want = fwd()[0], kernels.branch_forward_ref(x, a, b, base, S)[0]
        err = max(err, float((got.float() - want.float()).abs().max() / want.float().abs().max()))
        total += k * args.layers * median_ms(device_work(fwd))
    return total, err


for t in (int(v) for v in args.tokens.split(",")):
    ops = {s: operands(t, *s) for s in shapes}
    if args.forward:
        base, _ = forward_run(ops, False)
        print(f"| {t} | forward | peft's ops (cast, two cuBLAS products, the fused sum) | {base:.2f} | 1.000 | 0 |")
        for setting in settings:
            kernels.TILES.update(own)
            kernels.TILES["forward"] = setting
            total, err = forward_run(ops, True)
            print(f"| {t} | forward | {setting} | {total:.2f} | {total / base:.3f} | {err:.1e} |")
        kernels.TILES.update(own)
        continue
    if args.breakdown:
        if t == int(args.tokens.split(",")[0]):
            print("| tokens | computed | ms a step | GB moved at least | GB/s |")
            print("|---|---|---|---|---|")
        breakdown(t, ops)
        continue
    base = sum(k * args.layers * median_ms(device_work(lambda o=ops[s]: lora_branch._autograd_products(
        o[0], o[1].float(), o[2], o[3], o[4], S, torch.bfloat16, (True, True, True)))) for s, k in shapes.items())
    print(f"| {t} | | autograd's products (fp32) | {base:.2f} | 1.000 | 0 |")
    kernels.TILES.update(own)
    total, own_err = run(ops)
    print(f"| {t} | all | the module's | {total:.2f} | {total / base:.3f} | {own_err:.1e} |")
    best = {}
    for pass_ in args.passes.split(","):
        fastest = (total, own[pass_])
        for setting in settings:
            kernels.TILES.update(own)
            kernels.TILES[pass_] = setting
            total_s, err = run(ops)
            print(f"| {t} | {pass_} | {setting} | {total_s:.2f} | {total_s / base:.3f} | {err:.1e} |")
            if err <= own_err * 1.01 and total_s < fastest[0]:
                fastest = (total_s, setting)
        best[pass_] = fastest[1]
    kernels.TILES.update(own)
    kernels.TILES.update(best)
    total_b, err = run(ops)
    print(f"| {t} | each its fastest | {best} | {total_b:.2f} | {total_b / base:.3f} | {err:.1e} |")
    kernels.TILES.update(own)
