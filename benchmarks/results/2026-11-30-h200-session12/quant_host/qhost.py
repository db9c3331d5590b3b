"""Host time of one quantize_triton call by input kind (a loop, no sync), and a cProfile of the slowest."""
import cProfile, pstats, statistics, sys, time
sys.path.insert(0, ".")
import torch
from hyclora_hooks.kernels.quant import quantize_triton, dequantize_triton

def host_us(fn, n=100):
    for _ in range(10): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    return statistics.median(ts) * 1e6

idx = torch.arange(0, 4096, 205, device="cuda", dtype=torch.int16)[:20].sort().values
print("outliers", idx.numel(), idx.dtype)
rows = []
for tokens in (64, 4096):
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(tokens, 4096, device="cuda", dtype=dtype)
        for oi in (None, idx):
            for bits in (2, 4):
                f = lambda: quantize_triton(x, bits, 64, outlier_index=oi)
                q = f()
                rows.append((tokens, str(dtype), oi is not None, bits, host_us(f), host_us(lambda: dequantize_triton(q))))
                print(*rows[-1], flush=True)
worst = max(rows, key=lambda r: r[4])
print("worst", worst)
x = torch.randn(worst[0], 4096, device="cuda", dtype=getattr(torch, worst[1].split(".")[1]))
oi = idx if worst[2] else None
pr = cProfile.Profile(); pr.enable()
for _ in range(50): quantize_triton(x, worst[3], 64, outlier_index=oi)
pr.disable(); torch.cuda.synchronize()
pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
