"""Tiles of _quant_words_kernel (session 7, H200): elements a program (4096 / 8192 / 16384, at 4 warps) and row
tiles a program walks (ITERS), at 64 MiB, 256 MiB and 1 GiB bf16 x 4096, groups of 64, 20 outlier channels; GPU
time by the torch profiler, against a copy timed the same way; bit-exact against the reference on 2048 rows.

Ran on commit 77ea601's kernels/quant.py (where the outlier path walked ITERS tiles; the library now takes one
8192-element tile a program with outliers, so rerunning the ITERS rows needs that commit's file). Output:
../results/2026-11-30-h200-quant-words-tiles-session7.txt. Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_tiles.py``."""
import sys
import torch
from torch.profiler import profile, ProfilerActivity
sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q
from hyclora_hooks.kernels.nonfinite import collecting
Q._build()
kernels = {"library": Q._quant_words_kernel}
dev = torch.device("cuda")
def dev_time(fn, reps=30):
    fn(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps): fn()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) / reps
C = 4096
gen = torch.Generator(device=dev).manual_seed(0)
rows = []
for mib in (64, 256, 1024):
    R = (mib << 20) // (2 * C)
    x = torch.randn((R, C), generator=gen, device=dev).to(torch.bfloat16)
    idx = torch.sort(torch.randperm(C, generator=gen, device=dev)[:20]).values.to(torch.int16)
    x[:, idx.long()] *= 40
    dst = torch.empty_like(x)
    tc = dev_time(lambda: dst.copy_(x))
    del dst
    for bits in (2, 4):
        for outl in (False, True):
            oi = idx if outl else None
            for name, k in kernels.items():
                if not outl and name != "library":
                    continue
                for warps, tile, iters, minp in ((4, 4096, 8, 4096), (4, 8192, 1, 0), (4, 8192, 2, 0), (4, 8192, 4, 0), (4, 8192, 8, 4096), (4, 16384, 1, 0), (4, 4096, 8, 4096), (4, 8192, 1, 0)):
                    if name != "library" and warps != 4:
                        continue
                    Q._WARPS, Q._WORD_TILE, Q._WORD_ITERS, Q._WORD_ITERS_MIN_PROGRAMS = warps, tile, iters, minp
                    Q._quant_words_kernel = k
                    sink = []
                    def run():
                        with collecting(sink.append):
                            q = Q.quantize_triton(x, bits, 64, False, "group", oi)
                        sink.clear()
                        return q
                    q = run()
                    same = None
                    if name == "library":
                        ref = Q.quantize_ref(x[:2048], bits, 64, False, "group", oi)
                        sm = Q.quantize_triton(x[:2048], bits, 64, False, "group", oi)
                        same = all(torch.equal(getattr(sm, f), getattr(ref, f)) for f in ("packed", "scale", "zero") )
                    moved = x.numel() * 2 + q.nbytes
                    t = dev_time(run)
                    rows.append((mib, bits, outl, name, f"{warps}w/{tile}/{iters}", t, 100 * (moved / t) / (2 * x.numel() * 2 / tc), same))
                    Q._quant_words_kernel = kernels["library"]
    Q._WARPS, Q._WORD_TILE, Q._WORD_ITERS, Q._WORD_ITERS_MIN_PROGRAMS = 4, 4096, 8, 4096
    del x
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'variant':<14} {'cfg':>12} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %-14s %12s %8.1f %6.1f%% %s" % r)
