"""Variants of _quant_words_kernel for register pressure (session 7, H200): the ITERS loop unrolled (tl.static_range)
and the outlier mask built where it is used, at 64 MiB-1 GiB bf16 x 4096, with and without 20 outlier channels.
Output: ../results/2026-11-30-h200-quant-words-liveness-session7.txt (the library then took the unrolled loop:
rerunning compares it with itself for that variant). Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_liveness.py``."""
import inspect

import torch

from quant_words_common import Q, cases, dev_time, encoder, exact, kernel_variants, pct_copy

LOOP = "    for it in range(ITERS):\n"  # only in the kernel before the library took the unrolled loop
PRO = """        keep = tl.zeros(oc.shape, tl.int64)  # the word's bits outside its outlier lanes
        for j in tl.static_range(PER):
            keep = keep | ((1 - ((oc >> (BITS * j)) & 1)).to(tl.int64) * 0xFFFF) << (16 * j)
        keep = keep.to(w_ptr.dtype.element_ty)
"""
AND = "            w = w & keep\n"
INLINE = """            keep = tl.zeros(oc.shape, tl.int64)
            for j in tl.static_range(PER):
                keep = keep | ((1 - ((oc >> (BITS * j)) & 1)).to(tl.int64) * 0xFFFF) << (16 * j)
            w = w & keep.to(w_ptr.dtype.element_ty)
"""
Q._build()
edits = {"keep at use": [(PRO, ""), (AND, INLINE)]}
if LOOP in inspect.getsource(Q._quant_words_kernel.fn):
    edits["static_range"] = [(LOOP, "    for it in tl.static_range(ITERS):\n")]
    edits["both"] = edits["static_range"] + edits["keep at use"]
kernels = kernel_variants(edits)
info = {}


class Spy:
    """Launches ``kernel`` and notes the compiled kernel's registers and spills."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        def launch(*a, **kw):
            ck = self.kernel[grid](*a, **kw)
            info["regs"] = (ck.n_regs, ck.n_spills)
        return launch


rows = []
for mib, x, tc, bits, oi in cases():
    outl = oi is not None
    for name, k in list(kernels.items()) + [("library", kernels["library"])]:
        Q._quant_words_kernel = Spy(k)
        run = encoder(x, bits, oi)
        q = run()
        same = exact(x, bits, oi)
        t = dev_time(run)
        rows.append((mib, bits, outl, name, str(info["regs"]), t, pct_copy(x, q.nbytes, t, tc), same))
Q._quant_words_kernel = kernels["library"]
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'variant':<13} {'regs,spills':>11} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %-13s %11s %8.1f %6.1f%% %s" % r)
