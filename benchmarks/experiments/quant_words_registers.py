"""Registers (and spills) of the word quantize kernel with and without outlier channels, and its GPU time under
Triton's maxnreg caps, at 64 MiB-1 GiB bf16 x 4096, 20 outlier channels (session 7, H200). Output:
../results/2026-11-30-h200-quant-words-registers-session7.txt. Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_registers.py``."""
import sys
import torch
from torch.profiler import profile, ProfilerActivity
sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q
from hyclora_hooks.kernels.nonfinite import collecting
Q._build()
real = Q._quant_words_kernel
cap = {"maxnreg": None}
class Capped:
    def __getitem__(self, grid):
        def f(*a, **k):
            if cap["maxnreg"] is not None:
                k = dict(k, maxnreg=cap["maxnreg"])
            ck = real[grid](*a, **k)
            cap["regs"] = (ck.n_regs, ck.n_spills)
        return f
Q._quant_words_kernel = Capped()
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
    tc = dev_time(lambda: dst.copy_(x)); del dst
    for bits in (2, 4):
        for outl in (False, True):
            oi = idx if outl else None
            for mr in (None, 128, 96, 80, 64, 48):
                if not outl and mr not in (None,):
                    continue
                cap["maxnreg"] = mr
                sink = []
                def run():
                    with collecting(sink.append):
                        q = Q.quantize_triton(x, bits, 64, False, "group", oi)
                    sink.clear(); return q
                q = run()
                ref = Q.quantize_ref(x[:2048], bits, 64, False, "group", oi)
                sm = Q.quantize_triton(x[:2048], bits, 64, False, "group", oi)
                same = all(torch.equal(getattr(sm, f), getattr(ref, f)) for f in ("packed", "scale", "zero"))
                t = dev_time(run)
                moved = x.numel() * 2 + q.nbytes
                rows.append((mib, bits, outl, str(mr), str(cap["regs"]), t, 100 * (moved / t) / (2 * x.numel() * 2 / tc), same))
    del x
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'maxnreg':>7} {'regs,spills':>11} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %7s %11s %8.1f %6.1f%% %s" % r)
