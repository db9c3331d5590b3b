"""Registers (and spills) of the word quantize kernel with and without outlier channels, and its GPU time under
Triton's maxnreg caps, at 64 MiB-1 GiB bf16 x 4096, 20 outlier channels (session 7, H200). Output:
../results/2026-11-30-h200-quant-words-registers-session7.txt. Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_registers.py``."""
import torch

from quant_words_common import Q, cases, dev_time, encoder, exact, pct_copy

Q._build()
real = Q._quant_words_kernel
state = {"maxnreg": None}


class Capped:
    """The kernel launched with Triton's ``maxnreg`` option; notes the compiled kernel's registers and spills."""

    def __getitem__(self, grid):
        def launch(*a, **k):
            if state["maxnreg"] is not None:
                k = dict(k, maxnreg=state["maxnreg"])
            ck = real[grid](*a, **k)
            state["regs"] = (ck.n_regs, ck.n_spills)
        return launch


Q._quant_words_kernel = Capped()
rows = []
for mib, x, tc, bits, oi in cases():
    outl = oi is not None
    for mr in ((None, 128, 96, 80, 64, 48) if outl else (None,)):
        state["maxnreg"] = mr
        run = encoder(x, bits, oi)
        q = run()
        same = exact(x, bits, oi)
        t = dev_time(run)
        rows.append((mib, bits, outl, str(mr), str(state["regs"]), t, pct_copy(x, q.nbytes, t, tc), same))
Q._quant_words_kernel = real
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'maxnreg':>7} {'regs,spills':>11} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %7s %11s %8.1f %6.1f%% %s" % r)
