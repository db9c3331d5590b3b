"""Variants of _quant_words_kernel for register pressure (session 7, H200): the ITERS loop unrolled (tl.static_range)
and the outlier mask built where it is used, at 64 MiB-1 GiB bf16 x 4096, with and without 20 outlier channels.
Output: ../results/2026-11-30-h200-quant-words-liveness-session7.txt (the library then took the unrolled loop:
rerunning compares it with itself for that variant). Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_liveness.py``."""
import importlib.util, inspect, os, sys, tempfile
import torch
from torch.profiler import profile, ProfilerActivity
sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q
from hyclora_hooks.kernels.nonfinite import collecting
Q._build()
src = inspect.getsource(Q._quant_words_kernel.fn)
LOOP = "    for it in range(ITERS):\n"
PRO = """        keep = tl.zeros(oc.shape, tl.int64)  # the word's bits outside its outlier lanes
        for j in tl.static_range(PER):
            keep = keep | ((1 - ((oc >> (BITS * j)) & 1)).to(tl.int64) * 0xFFFF) << (16 * j)
        keep = keep.to(w_ptr.dtype.element_ty)
"""
AND = "            w = w & keep\n"
assert PRO in src and AND in src  # (LOOP: only in the kernel before the library took the unrolled loop)
INLINE = """            keep = tl.zeros(oc.shape, tl.int64)
            for j in tl.static_range(PER):
                keep = keep | ((1 - ((oc >> (BITS * j)) & 1)).to(tl.int64) * 0xFFFF) << (16 * j)
            w = w & keep.to(w_ptr.dtype.element_ty)
"""
edits = {"keep at use": [(PRO, ""), (AND, INLINE)]}
if LOOP in src:
    edits["static_range"] = [(LOOP, "    for it in tl.static_range(ITERS):\n")]
    edits["both"] = edits["static_range"] + edits["keep at use"]
tmp = tempfile.mkdtemp()
kernels = {"library": Q._quant_words_kernel}
for i, (name, ed) in enumerate(edits.items()):
    s = src
    for a, b in ed:
        s = s.replace(a, b)
    path = os.path.join(tmp, f"qr{i}.py")
    open(path, "w").write("import triton\nimport triton.language as tl\nfrom hyclora_hooks.kernels.quant import ("
                          "_word_tile, _outlier_cols, _elem, _min_nan, _max_nan, _group_params, _hash_uniform)\n\n"
                          "@triton.jit\n" + s)
    spec = importlib.util.spec_from_file_location(f"qr{i}", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    kernels[name] = mod._quant_words_kernel
info = {}
class Spy:
    def __init__(self, k): self.k = k
    def __getitem__(self, grid):
        def f(*a, **kw):
            ck = self.k[grid](*a, **kw); info["regs"] = (ck.n_regs, ck.n_spills)
        return f
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
    dst = torch.empty_like(x); tc = dev_time(lambda: dst.copy_(x)); del dst
    for bits in (2, 4):
        for outl in (False, True):
            oi = idx if outl else None
            for name, k in list(kernels.items()) + [("library", kernels["library"])]:
                Q._quant_words_kernel = Spy(k)
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
                rows.append((mib, bits, outl, name, str(info["regs"]), t, 100 * (x.numel() * 2 + q.nbytes) / t / (2 * x.numel() * 2 / tc), same))
    del x
Q._quant_words_kernel = kernels["library"]
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'variant':<13} {'regs,spills':>11} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %-13s %11s %8.1f %6.1f%% %s" % r)
