"""Library _quant_kernel variants (source edits) + outlier gather/scatter options; 1 GiB bf16 x 4096, g64."""
import sys, torch, triton, triton.language as tl, triton.testing
sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q
from hyclora_hooks.kernels.nonfinite import collecting
Q._build()
src = open("kernels/quant.py").read()
ksrc = src[src.index("def _quant_kernel("):src.index("def _colstats_kernel(")]
NB = """    nbad = tl.max(tl.max(bad.to(tl.int32), axis=1), axis=0)
    if nbad > 0:
        tl.atomic_add(nf_ptr, 1)  # a flag: the host gathers positions later (kernels/nonfinite.py)
"""
assert NB in ksrc
variants = {
    "library": ksrc,
    "nf per-row atomic": ksrc.replace(NB, """    rbad = tl.max(bad.to(tl.int32), axis=1)
    tl.atomic_add(nf_ptr + rows * 0, rbad, mask=rbad > 0)
"""),
    "nf none": ksrc.replace(NB, ""),
    "nf none, no finite": ksrc.replace(NB, "").replace("valid = mask & finite", "valid = mask"),
}
from variant_loader import load_kernel
header = ("import triton\nimport triton.language as tl\nfrom hyclora_hooks.kernels import quant as Q\n"
          "_tile, _bf16_round, _hash_uniform = Q._tile, Q._bf16_round, Q._hash_uniform\n\n"
          "@triton.jit(do_not_specialize=['seed'])\n")
kernels = {name: load_kernel(header, s, "_quant_kernel") for name, s in variants.items()}
dev = torch.device("cuda"); C = 4096; R = (1 << 30) // (2 * C)
x = torch.randn((R, C), device=dev).to(torch.bfloat16)
nb = x.numel() * 2
b = lambda f: triton.testing.do_bench(f, warmup=25, rep=100, return_mode="median") * 1e-3
dst = torch.empty_like(x); tc = b(lambda: dst.copy_(x)); copy_bw = 2 * nb / tc; del dst
out = []
for bits in (2, 4):
    pw = C * bits // 8
    packed = torch.empty((R * C // 64, 64 * bits // 8), dtype=torch.uint8, device=dev)
    scale = torch.empty(R * C // 64, dtype=torch.bfloat16, device=dev); zero = torch.empty_like(scale)
    nf = torch.zeros(1, dtype=torch.int32, device=dev)
    moved = nb + packed.numel() + 4 * scale.numel()
    for name, k in kernels.items():
        for br, w in ((16, 4), (32, 4), (32, 8), (64, 8), (64, 16)):
            for fuse in (False,):
                grid = (C // 64 * (R // br),)
                f = lambda: k[grid](x, packed, scale, zero, nf, x, nf, R, C, C, 1, R * C, C, 0, pw, 0, MODE=0, BITS=bits,
                                    SYM=False, HAS_OUTL=False, STOCH=False, RAGGED=False, EVEN=True, INT64=False,
                                    BLOCK_R=br, BLOCK_C=64, num_warps=w, enable_fp_fusion=fuse)
                ck = f()
                out.append((f"{bits}b {name:<18} {br}x64 w{w} regs {ck.n_regs} spills {ck.n_spills}", moved / b(f)))
    out.append((f"{bits}b quantize_triton() outside a collector", moved / b(lambda: Q.quantize_triton(x, bits, 64))))
    sink = []
    def deferred():
        with collecting(sink.append):
            Q.quantize_triton(x, bits, 64)
        sink.clear()
    out.append((f"{bits}b quantize_triton() in a collector", moved / b(deferred)))
for name, bw in out:
    print(f"{name:<52} {bw/1e9:7.0f} GB/s {100*bw/copy_bw:5.1f}%")

