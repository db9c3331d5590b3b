"""Where the word quantize kernel's outlier handling spends its time (H200, session 5): ``_quant_words_kernel``
with parts removed by source edits, taller tiles (fewer groups side by side, more rows) and programs that walk
ITERS row tiles (``_WORD_ITERS``: outlier lanes decoded once per program), at 1 GiB bf16 x 4096,
groups of 64, 0.5% outlier channels. Variants that drop a part store wrong bytes: timing only. Run from the
repository root on a GPU: ``PYTHONPATH=. python benchmarks/experiments/quant_words_outliers.py``."""
import importlib.util
import inspect
import os
import sys
import tempfile

import torch
import triton.testing

sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q  # noqa: E402
from hyclora_hooks.kernels.nonfinite import collecting  # noqa: E402

Q._build()
src = inspect.getsource(Q._quant_words_kernel.fn)
# (The first two runs also had a "no select" variant: the per-element select that left outlier lanes out of the
# statistics, replaced since by one mask a word; results in ../results/2026-11-30-h200-quant-words-outliers-*.txt.)
GATHER = "        if HAS_OUTL:  # last:"
AND = "            w = w & keep"
CLEAR = [("            pk = pk & ~oc", "            pk = pk"), ("                q = q & LEVELS", "                q = q")]
assert GATHER in src and AND in src and all(a in src for a, _ in CLEAR)
edits = {"no gather": [(GATHER, "        if False:  # last:")], "no mask": [(AND, "            w = w")],
         "no clear": CLEAR}
edits["none of them"] = edits["no gather"] + edits["no mask"] + edits["no clear"]
tmp = tempfile.mkdtemp()
kernels = {"library": Q._quant_words_kernel}
for i, (name, ed) in enumerate(edits.items()):
    s = src
    for a, b in ed:
        s = s.replace(a, b)
    path = os.path.join(tmp, f"qw{i}.py")
    with open(path, "w") as fh:
        fh.write("import triton\nimport triton.language as tl\nfrom hyclora_hooks.kernels.quant import (_word_tile, "
                 "_outlier_cols, _elem, _min_nan, _max_nan, _group_params, _hash_uniform)\n\n@triton.jit\n" + s)
    spec = importlib.util.spec_from_file_location(f"qw{i}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    kernels[name] = mod._quant_words_kernel

orig_tiles = Q._word_tiles


def capped(cap_ng):
    def tiles(granularity, g, cw, per):
        mode, br, ng, bw = orig_tiles(granularity, g, cw, per)
        if mode == 0 and ng > cap_ng:
            br, ng = br * ng // cap_ng, cap_ng
        return mode, br, ng, bw
    return tiles


dev = torch.device("cuda")
C = 4096
R = (1 << 30) // (2 * C)
gen = torch.Generator(device=dev).manual_seed(0)
x = torch.randn((R, C), generator=gen, device=dev).to(torch.bfloat16)
idx = torch.sort(torch.randperm(C, generator=gen, device=dev)[:20]).values.to(torch.int16)
x[:, idx.long()] *= 40
bench = lambda f: triton.testing.do_bench(f, warmup=25, rep=100, return_mode="median") * 1e-3  # noqa: E731
dst = torch.empty_like(x)
t_copy = bench(lambda: dst.copy_(x))
del dst
copy_bw = 2 * x.numel() * 2 / t_copy
rows = []
for bits in (2, 4):
    ref = Q.quantize_ref(x[:4096], bits, 64, False, "group", idx)
    for outl in (False, True):
        oi = idx if outl else None
        for name, k in kernels.items():
            if not outl and name != "library":
                continue
            for cap, iters in ((64, 1), (64, 2), (64, 4), (64, 8), (64, 16), (16, 1), (16, 8)):
                if name != "library" and (cap, iters) not in ((64, 1), (64, 8)):
                    continue
                Q._WORD_ITERS = iters
                Q._quant_words_kernel, Q._word_tiles = k, capped(cap)
                q = Q.quantize_triton(x, bits, 64, False, "group", oi)
                moved = x.numel() * 2 + q.nbytes
                same = None
                if name == "library":
                    small = Q.quantize_triton(x[:4096], bits, 64, False, "group", idx)
                    same = all(torch.equal(getattr(small, f), getattr(ref, f)) for f in ("packed", "scale", "zero",
                                                                                           "outlier_value"))
                sink = []

                def run():
                    with collecting(sink.append):
                        Q.quantize_triton(x, bits, 64, False, "group", oi)
                    sink.clear()
                t = bench(run)
                rows.append((bits, outl, name, f"{cap}/{iters}", t, moved / t / copy_bw, same))
            Q._quant_words_kernel, Q._word_tiles = kernels["library"], orig_tiles
print(f"copy {t_copy * 1e6:.1f} us ({copy_bw / 1e12:.2f} TB/s), {torch.cuda.get_device_name()}")
print(f"{'bits':>4} {'outl':>5} {'variant':<22} {'NG/ITERS':>8} {'us':>8} {'% copy':>7} bit-exact")
for bits, outl, name, cap, t, frac, same in rows:
    print(f"{bits:>4} {str(outl):>5} {name:<22} {cap:>8} {t * 1e6:>8.1f} {100 * frac:>6.1f}% {same}")
