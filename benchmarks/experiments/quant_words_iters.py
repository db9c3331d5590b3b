"""ITERS (row tiles a word-quantize program walks with outlier channels) against tensor size, by GPU work alone
(torch profiler: kernels, memsets, copies of a call), bf16 x 4096, groups of 64, 0.5% outlier channels (session 5,
H200). Run from the repository root on a GPU: ``PYTHONPATH=. python benchmarks/experiments/quant_words_iters.py``."""
import sys

import torch

sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q  # noqa: E402
from hyclora_hooks.kernels.nonfinite import collecting  # noqa: E402
from tools.bench_quant import timers  # noqa: E402

_, device_time = timers(True)


dev = torch.device("cuda")
C = 4096
gen = torch.Generator(device=dev).manual_seed(0)
idx = torch.sort(torch.randperm(C, generator=gen, device=dev)[:20]).values.to(torch.int16)
Q._WORD_ITERS_MIN_PROGRAMS = 1
print(f"{'MiB':>5} {'bits':>4} {'outl':>5} {'ITERS':>5} {'dev us':>8} {'% copy':>7}")
for mib in (64, 256, 1024):
    R = (mib << 20) // (2 * C)
    x = torch.randn((R, C), generator=gen, device=dev).to(torch.bfloat16)
    x[:, idx.long()] *= 40
    dst = torch.empty_like(x)
    t_copy = device_time(lambda: dst.copy_(x))
    del dst
    for bits in (2, 4):
        for outl in (False, True):
            oi = idx if outl else None
            for iters in (1, 2, 4, 8, 16):
                Q._WORD_ITERS = iters
                moved = x.numel() * 2 + Q.quantize_triton(x, bits, 64, False, "group", oi).nbytes
                sink = []

                def run():
                    with collecting(sink.append):
                        Q.quantize_triton(x, bits, 64, False, "group", oi)
                    for r in sink:
                        r.settle()
                    sink.clear()
                t = device_time(run)
                print(f"{mib:>5} {bits:>4} {str(outl):>5} {iters:>5} {t * 1e6:>8.1f} "
                      f"{100 * (moved / t) / (2 * x.numel() * 2 / t_copy):>6.1f}%")
    del x
