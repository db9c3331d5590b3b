"""Variants of _quant_words_kernel's outlier path at its session-7 tiles (8192 elements a program, 4 warps): 2 and
8 warps, half-row column blocks (NG = 32), an evict-first load of the input, and no outlier gather (wrong bytes:
timing only), at 64 MiB, 256 MiB and 1 GiB bf16 x 4096, 20 outlier channels; GPU time by the torch profiler.
Output: ../results/2026-11-30-h200-quant-words-tile-variants-session7.txt. Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_tile_variants.py``."""
import importlib.util, inspect, os, sys, tempfile
import torch
from torch.profiler import profile, ProfilerActivity
sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q
from hyclora_hooks.kernels.nonfinite import collecting
Q._build()
src = inspect.getsource(Q._quant_words_kernel.fn)
GATHER = """        if HAS_OUTL:  # last: the tile's rows are in L1 by now, and the lanes long loaded
            rm = (rows < R)[:, None] & tm[None, :]
            col = tl.load(x_ptr + rows[:, None] * (s_r * PER) + c_t[None, :], mask=rm)
            tl.store(outl_ptr + rows[:, None] * K + t[None, :], col, mask=rm)"""
AND = "            w = w & keep"
CLEAR = [("            pk = pk & ~oc", "            pk = pk")]
LOADW = """        if HAS_OUTL:  # outlier lanes read +0 from here on (their codes are cleared below)
            w = w & keep"""
assert GATHER in src and AND in src and LOADW in src
LW1 = "            w = tl.load(w_ptr + r3 * s_r + w3)\n"
LW2 = "            w = tl.load(w_ptr + r3 * s_r + w3, mask=mask, other=0)\n"
assert LW1 in src and LW2 in src
edits = {"evict first": [(LW1, LW1.replace(")\n", ', eviction_policy="evict_first")\n')),
                         (LW2, LW2.replace(")\n", ', eviction_policy="evict_first")\n'))],
         "no gather": [(GATHER, "")]}
tmp = tempfile.mkdtemp()
kernels = {"library": Q._quant_words_kernel}
for i, (name, ed) in enumerate(edits.items()):
    s = src
    for a, b in ed:
        assert a in s, (name, a)
        s = s.replace(a, b)
    path = os.path.join(tmp, f"qw{i}.py")
    open(path, "w").write("import triton\nimport triton.language as tl\nfrom hyclora_hooks.kernels.quant import ("
                          "_word_tile, _outlier_cols, _elem, _min_nan, _max_nan, _group_params, _hash_uniform)\n\n"
                          "@triton.jit\n" + s)
    spec = importlib.util.spec_from_file_location(f"qw{i}", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    kernels[name] = mod._quant_words_kernel
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
                for warps, tile, cap in ((4, 8192, 64), (2, 8192, 64), (4, 8192, 32), (8, 16384, 64), (4, 8192, 64)):
                    if name != "library" and (warps, cap) != (4, 64):
                        continue
                    if not outl and (warps, cap, tile) != (4, 64, 8192):
                        continue
                    Q._WARPS, Q._WORD_TILE_OUTLIERS, Q._WORD_TILE = warps, tile, cap * 64
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
                    rows.append((mib, bits, outl, name, f"{warps}w/{tile}/ng{cap}", t, 100 * (moved / t) / (2 * x.numel() * 2 / tc), same))
                    Q._quant_words_kernel = kernels["library"]
    Q._WARPS, Q._WORD_TILE, Q._WORD_TILE_OUTLIERS = 4, 4096, 8192
    del x
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'variant':<14} {'cfg':>12} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %-14s %12s %8.1f %6.1f%% %s" % r)
