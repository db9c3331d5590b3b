"""Where quantize's time goes: stripped MODE-0 kernels (asym, even tiles, g=64), 1 GiB bf16 x 4096, H100."""
import sys, torch, triton, triton.language as tl, triton.testing
sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q

@triton.jit
def k_parts(x_ptr, p_ptr, s_ptr, z_ptr, C, PW, STATS: tl.constexpr, CODES: tl.constexpr, PACK: tl.constexpr,
            FIN: tl.constexpr, BITS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    PER: tl.constexpr = 8 // BITS
    pid = tl.program_id(0)
    ncb = C // BLOCK_C
    pid_c = pid % ncb
    pid_r = pid // ncb
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    x = tl.load(x_ptr + rows[:, None] * C + cols[None, :])
    xf = x.to(tl.float32)
    if FIN:
        valid = tl.abs(xf) < float("inf")
        lo = tl.min(tl.where(valid, xf, float("inf")), axis=1)
        hi = tl.max(tl.where(valid, xf, float("-inf")), axis=1)
    else:
        lo = tl.min(xf, axis=1)
        hi = tl.max(xf, axis=1)
    sc = (hi - lo) * (1.0 / (2**BITS - 1))
    sc = tl.where(sc == 0, 1.0, sc)
    pidx = rows * ncb + pid_c
    tl.store(s_ptr + pidx, sc.to(tl.bfloat16))
    tl.store(z_ptr + pidx, lo.to(tl.bfloat16))
    if CODES:
        inv = 1.0 / sc
        q = tl.floor((xf - lo[:, None]) * inv[:, None] + 0.5)
        q = tl.minimum(tl.maximum(q, 0.0), 2.0**BITS - 1).to(tl.int32)
        if PACK:
            q3 = tl.reshape(q, (BLOCK_R, BLOCK_C // PER, PER))
            sh = tl.arange(0, PER) * BITS
            pk = tl.sum(q3 << sh[None, None, :], axis=2)
            pcols = pid_c * (BLOCK_C // PER) + tl.arange(0, BLOCK_C // PER)
            tl.store(p_ptr + rows[:, None] * PW + pcols[None, :], pk.to(tl.uint8))
        else:
            tl.store(p_ptr + rows[:, None] * C + cols[None, :], q.to(tl.uint8))

@triton.jit
def k_planar(x_ptr, p_ptr, s_ptr, z_ptr, C, PW, BITS: tl.constexpr, BLOCK_R: tl.constexpr, G: tl.constexpr):
    """Planar packing: byte j of a group holds codes j, j+W, j+2W, ... (W = G / PER): PER sub-tile loads, no reshape."""
    PER: tl.constexpr = 8 // BITS
    W: tl.constexpr = G // PER
    pid = tl.program_id(0)
    ncb = C // G
    pid_c = pid % ncb
    pid_r = pid // ncb
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    base = x_ptr + rows[:, None] * C + pid_c * G + tl.arange(0, W)[None, :]
    x0 = tl.load(base).to(tl.float32)
    x1 = tl.load(base + W).to(tl.float32)
    lo = tl.minimum(x0, x1); hi = tl.maximum(x0, x1)
    if PER == 4:
        x2 = tl.load(base + 2 * W).to(tl.float32)
        x3 = tl.load(base + 3 * W).to(tl.float32)
        lo = tl.minimum(lo, tl.minimum(x2, x3)); hi = tl.maximum(hi, tl.maximum(x2, x3))
    lo = tl.min(lo, axis=1); hi = tl.max(hi, axis=1)
    sc = (hi - lo) * (1.0 / (2**BITS - 1))
    sc = tl.where(sc == 0, 1.0, sc)
    inv = (1.0 / sc)[:, None]
    z = lo[:, None]
    pidx = rows * ncb + pid_c
    tl.store(s_ptr + pidx, sc.to(tl.bfloat16))
    tl.store(z_ptr + pidx, lo.to(tl.bfloat16))
    MX: tl.constexpr = 2.0**BITS - 1
    q = tl.minimum(tl.maximum(tl.floor((x0 - z) * inv + 0.5), 0.0), MX).to(tl.int32)
    q |= tl.minimum(tl.maximum(tl.floor((x1 - z) * inv + 0.5), 0.0), MX).to(tl.int32) << BITS
    if PER == 4:
        q |= tl.minimum(tl.maximum(tl.floor((x2 - z) * inv + 0.5), 0.0), MX).to(tl.int32) << 4
        q |= tl.minimum(tl.maximum(tl.floor((x3 - z) * inv + 0.5), 0.0), MX).to(tl.int32) << 6
    tl.store(p_ptr + rows[:, None] * PW + pid_c * W + tl.arange(0, W)[None, :], q.to(tl.uint8))

@triton.jit
def k_copy(x_ptr, y_ptr, C, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    ncb = C // BLOCK_C
    rows = (pid // ncb) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = (pid % ncb) * BLOCK_C + tl.arange(0, BLOCK_C)
    tl.store(y_ptr + rows[:, None] * C + cols[None, :], tl.load(x_ptr + rows[:, None] * C + cols[None, :]))

dev = torch.device("cuda"); C = 4096; R = (1 << 30) // (2 * C)
x = torch.randn((R, C), device=dev).to(torch.bfloat16)
nb = x.numel() * 2
b = lambda f: triton.testing.do_bench(f, warmup=25, rep=100, return_mode="median") * 1e-3
dst = torch.empty_like(x)
tc = b(lambda: dst.copy_(x)); copy_bw = 2 * nb / tc
print(f"torch copy {copy_bw/1e9:.0f} GB/s")
res = []
for BR, BC, W in ((64, 64, 4), (32, 64, 4), (128, 64, 8)):
    grid = (R // BR * (C // BC),)
    t = b(lambda: k_copy[grid](x, dst, C, BLOCK_R=BR, BLOCK_C=BC, num_warps=W))
    res.append((f"triton copy tile {BR}x{BC} w{W}", 2 * nb / t))
for bits in (2, 4):
    per = 8 // bits; PW = C // per
    p8 = torch.empty((R, C), dtype=torch.uint8, device=dev)
    s = torch.empty(R * C // 64, dtype=torch.bfloat16, device=dev); z = torch.empty_like(s)
    pk = torch.empty((R, PW), dtype=torch.uint8, device=dev)
    pay = pk.numel() + 4 * s.numel()
    for BR, W in ((64, 4), (32, 4), (128, 8)):
        grid = (R // BR * (C // 64),)
        for label, kw, out, moved in (("stats only", dict(STATS=1, CODES=0, PACK=0, FIN=1), pk, nb + 4 * s.numel()),
                                      ("stats, no finite mask", dict(STATS=1, CODES=0, PACK=0, FIN=0), pk, nb + 4 * s.numel()),
                                      ("codes unpacked u8", dict(STATS=1, CODES=1, PACK=0, FIN=1), p8, nb + R * C + 4 * s.numel()),
                                      ("codes packed (reshape)", dict(STATS=1, CODES=1, PACK=1, FIN=1), pk, nb + pay),
                                      ("packed, no finite", dict(STATS=1, CODES=1, PACK=1, FIN=0), pk, nb + pay)):
            t = b(lambda: k_parts[grid](x, out, s, z, C, PW, BITS=bits, BLOCK_R=BR, BLOCK_C=64, num_warps=W, **kw))
            res.append((f"{bits}b {BR}x64 w{W} {label}", moved / t))
        t = b(lambda: k_planar[grid](x, pk, s, z, C, PW, BITS=bits, BLOCK_R=BR, G=64, num_warps=W))
        res.append((f"{bits}b {BR}x64 w{W} planar pack", (nb + pay) / t))
    t = b(lambda: Q.quantize_triton(x, bits, 64))
    res.append((f"{bits}b library quantize_triton (default tile)", (nb + pay) / t))
for name, bw in res:
    print(f"{name:<45} {bw/1e9:7.0f} GB/s {100*bw/copy_bw:5.1f}% of copy")
