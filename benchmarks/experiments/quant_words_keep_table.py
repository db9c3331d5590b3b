"""Variants of _quant_words_kernel's outlier path (session 8, H200): the per-word keep mask read from a table made once
per outlier index (one load a word, L1/L2-resident) instead of built from the code mask in every program, and the
code mask loaded where it is used (or, "table, oc early", once per program as the library does), so neither
stays live across the tile's statistics; timed against the library
kernel and a variant without any outlier masking (wrong bytes: the floor of this approach), at 64 MiB-1 GiB bf16 x
4096, 20 outlier channels; GPU time by the torch profiler. Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_keep_table.py`` (``QW_SIZES=64`` for a quick run)."""
import os

import numpy as np
import torch

from quant_words_common import Q, cases, dev_time, encoder, exact, kernel_variants, pct_copy

SIG = "start_ptr, lanes_ptr, ocode_ptr, outl_ptr,"
PRO = """        oc = tl.load(ocode_ptr + w30, mask=w30 < CW, other=0).to(tl.int32)
        t, c_t, tm = _outlier_cols(start_ptr, lanes_ptr, pid_c0, KB)
        keep = tl.zeros(oc.shape, tl.int64)  # the word's bits outside its outlier lanes
        for j in tl.static_range(PER):
            keep = keep | ((1 - ((oc >> (BITS * j)) & 1)).to(tl.int64) * 0xFFFF) << (16 * j)
        keep = keep.to(w_ptr.dtype.element_ty)
"""
AND = "            w = w & keep\n"
CLEAR = "            pk = pk & ~oc\n"
TABLE_AND = """            if EVEN:
                w = w & tl.load(keep_ptr + (w3 + 0 * r3))
            else:
                w = w & tl.load(keep_ptr + (w3 + 0 * r3), mask=mask, other=0)
"""
LATE_CLEAR = """            pk = pk & ~(tl.load(ocode_ptr + (w3 + 0 * r3), mask=w3 < CW, other=0).to(tl.int32))
"""
kernels = kernel_variants({
    "keep table": [(SIG, "start_ptr, lanes_ptr, ocode_ptr, keep_ptr, outl_ptr,"),
                   (PRO, "        t, c_t, tm = _outlier_cols(start_ptr, lanes_ptr, pid_c0, KB)\n"),
                   (AND, TABLE_AND), (CLEAR, LATE_CLEAR)],
    "table, oc early": [(SIG, "start_ptr, lanes_ptr, ocode_ptr, keep_ptr, outl_ptr,"),
                        (PRO, PRO.split("\n")[0] + "\n" + PRO.split("\n")[1] + "\n"), (AND, TABLE_AND)],
    "late oc reload": [(SIG, "start_ptr, lanes_ptr, ocode_ptr, keep_ptr, outl_ptr,"), (CLEAR, LATE_CLEAR)],
    "no masking": [(SIG, "start_ptr, lanes_ptr, ocode_ptr, keep_ptr, outl_ptr,"),
                   (PRO, "        t, c_t, tm = _outlier_cols(start_ptr, lanes_ptr, pid_c0, KB)\n"),
                   (AND, "            w = w\n"), (CLEAR, "            pk = pk\n")],
})
_tables: dict = {}


def keep_table(idx: torch.Tensor, c: int, bits: int) -> torch.Tensor:
    """One word of the input's dtype per word of channels: 0xFFFF in each lane that is not an outlier channel."""
    key = (bits, c, tuple(idx.tolist()))  # each size of cases() has its own outlier channels
    if key not in _tables:
        per = 8 // bits
        hit = np.zeros(c, dtype=np.uint64)
        hit[idx.long().cpu().numpy()] = 1
        lanes = hit.reshape(-1, per)
        keep = np.zeros(c // per, dtype=np.uint64)
        for j in range(per):
            keep |= ((np.uint64(1) - lanes[:, j]) * np.uint64(0xFFFF)) << np.uint64(16 * j)
        word, unsigned = {1: (np.int16, np.uint16), 2: (np.int32, np.uint32), 4: (np.int64, np.uint64)}[per]
        _tables[key] = torch.from_numpy(keep.astype(unsigned).view(word)).to(idx.device)
    return _tables[key]


class WithTable:
    """Launches a variant with the keep table inserted after ``ocode_ptr`` (argument 8)."""

    def __init__(self, kernel, idx, c, bits):
        self.kernel, self.args = kernel, (idx, c, bits)

    def __getitem__(self, grid):
        def launch(*a, **kw):
            table = keep_table(*self.args) if kw["HAS_OUTL"] else a[0]
            return self.kernel[grid](*a[:8], table, *a[8:], **kw)
        return launch


rows = []
VARIANTS = os.environ.get("QW_VARIANTS", "keep table,late oc reload").split(",")
for mib, x, tc, bits, oi in cases((2, 4, 8)):
    if oi is None:
        continue
    for name, k in [("library", kernels["library"])] + [(v, kernels[v]) for v in VARIANTS] + \
            [("library", kernels["library"])]:
        Q._quant_words_kernel = k if name == "library" else WithTable(k, oi, x.shape[1], bits)
        run = encoder(x, bits, oi)
        q = run()
        same = exact(x, bits, oi)
        t = dev_time(run)
        rows.append((mib, bits, name, t, pct_copy(x, q.nbytes, t, tc), same))
    Q._quant_words_kernel = kernels["library"]
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'variant':<12} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %-12s %8.1f %6.1f%% %s" % r)
