"""Host time of a quantize call and of its parts on a GPU machine (session 8).

1. One launch of the word quantize kernel: ``kernel[grid](...)`` against ``kernels.launch.launch`` (NOTE [Direct
   launch]) against the compiled kernel's own launcher called by hand.
2. ``quantize()`` on a 1 MiB tensor (the GPU never the limit), outside ``compress()`` (NOTE [Deferred non-finite
   check] rule 6), with direct launches on and off; dequantize the same.
3. The word path's pieces, cumulatively: each row adds one step of ``_quantize_words`` to the previous row's.
4. What a caller timing ``quantize()`` with ``triton.testing.do_bench`` sees at 64 MiB, against the copy.
5. Direct launches store and decode the reference's bytes.

Each timing is the best of several alternated loops (the host's speed drifts within a machine session).
Run from the repository root: ``PYTHONPATH=. python benchmarks/experiments/launch_host_time.py``."""
import sys
import time

sys.path.insert(0, '.')
import torch  # noqa: E402
import triton.testing  # noqa: E402

from hyclora_hooks.kernels import launch as L, nonfinite as NF, quant as Q  # noqa: E402
from hyclora_hooks.kernels.nonfinite import Nonfinite  # noqa: E402

dev = torch.device('cuda')
gen = torch.Generator(device=dev).manual_seed(0)
C = 4096
x = torch.randn((256, C), generator=gen, device=dev).to(torch.bfloat16)
idx = torch.sort(torch.randperm(C, generator=gen, device=dev)[:20]).values.to(torch.int16)
Q._build()


def loop_us(fn, n=500):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    us = (time.perf_counter() - t0) / n * 1e6
    torch.cuda.synchronize()
    NF.settle_background(True)
    return us


def compare(named: dict, rounds=5) -> dict:
    """{name: best us a call} over ``rounds`` alternated loops of every function."""
    for fn in named.values():
        for _ in range(50):
            fn()
    best = {k: float("inf") for k in named}
    for _ in range(rounds):
        for k, fn in named.items():
            best[k] = min(best[k], loop_us(fn))
    return best


rows = []

# 1. one launch
real = Q._quant_words_kernel
cap = {}


class Spy:
    def __getitem__(self, grid):
        def f(*args, **kw):
            cap['grid'], cap['args'], cap['kw'] = grid, args, kw
            return real[grid](*args, **kw)
        return f


Q._quant_words_kernel = Spy()
L.DIRECT = False
Q.quantize_triton(x, 2, 64, False, 'group', idx)
L.DIRECT = True
Q._quant_words_kernel = real
grid, args, meta = cap['grid'], cap['args'], cap['kw']
ck = real[grid](*args, **meta)
tail = tuple(meta[n] for n in real.arg_names[len(args):])
stream = torch.cuda.current_stream().cuda_stream
cache: dict = {}
for k, v in compare({
    "kernel[grid](...)": lambda: real[grid](*args, **meta),
    "launch(...) (direct)": lambda: L.launch(real, grid, cache, args, meta),
    "compiled.run by hand": lambda: ck.run(grid[0], 1, 1, stream, ck.function, ck.packed_metadata, None, None, None,
                                           *args, *tail),
}).items():
    rows.append(("1 launch: " + k, v))


# 2. whole calls
def quant_call(bits, oi, direct):
    def f():
        L.DIRECT = direct
        Q.quantize_triton(x, bits, 64, False, 'group', oi)
    return f


named = {}
for bits in (2, 4):
    for oi in (None, idx):
        for direct in (True, False):
            named[f"quantize {bits} bits, outliers {oi is not None}, direct {direct}"] = quant_call(bits, oi, direct)
q2 = Q.quantize_triton(x, 2, 64, False, 'group', idx)


def deq(direct):
    def f():
        L.DIRECT = direct
        Q.dequantize_triton(q2)
    return f


named["dequantize 2 bits, outliers, direct True"] = deq(True)
named["dequantize 2 bits, outliers, direct False"] = deq(False)
for k, v in compare(named).items():
    rows.append(("2 " + k, v))
L.DIRECT = True

# 3. the word path, cumulatively (2 bits, outliers)
r, c, bits, g = 256, C, 2, 64
per = 8 // bits
steps = []


def prefix(n):
    def f():
        x2 = x.reshape(r, c)
        if n < 2:
            return
        words = Q._as_words(x2, bits)
        if n < 3:
            return
        grid, block, meta, launches = Q._word_quant_plan(r, c // per, words.stride(0), x.dtype, bits, g, False, 20,
                                                         False)
        if n < 4:
            return
        ngroups = r * c // g
        packed = torch.empty((ngroups, g * bits // 8), dtype=torch.uint8, device=dev)
        scale = torch.empty(ngroups, dtype=Q.PARAM_DTYPE, device=dev)
        zero = torch.empty(ngroups, dtype=Q.PARAM_DTYPE, device=dev)
        if n < 5:
            return
        nf = NF.host_flag(dev)
        if n < 6:
            NF._FLAGS.give_back(nf)
            return
        outl = torch.empty((r, 20), dtype=x.dtype, device=dev)
        tables = (Q._outlier_table(idx, "start", c, block), Q._outlier_table(idx, "lanes", c, block),
                  Q._outlier_table(idx, "words", c, per), outl)
        if n < 7:
            NF._FLAGS.give_back(nf)
            return
        L.launch(Q._quant_words_kernel, grid, launches, (words, x2, packed, scale, zero, *tables, nf, r, c // per,
                                                          words.stride(0), 20, 0), meta)
        if n < 8:
            torch.cuda.synchronize()
            NF._FLAGS.give_back(nf)
            return
        nonfinite = Nonfinite.find(x2, nf, idx, repair=lambda: None)
        if n < 9:
            return
        Q.QuantizedTensor(packed, scale, zero, nonfinite, x.shape, x.dtype, bits, g, "group", idx.contiguous(), outl)
    return f


labels = ["x.reshape", "+ view as words", "+ launch plan", "+ packed/scale/zero (3 torch.empty)", "+ host flag",
          "+ outlier buffer and tables", "+ launch (direct; the row adds a sync)", "+ Nonfinite.find (event, queue)",
          "+ QuantizedTensor"]
res = compare({lab: prefix(i + 1) for i, lab in enumerate(labels) if i != 6})
for lab in labels:
    if lab in res:
        rows.append(("3 " + lab, res[lab]))
named = {"quantize_triton itself": quant_call(2, idx, True)}
rows.append(("3 = quantize_triton", compare(named)["quantize_triton itself"]))

# 3b. the steps timed alone: the launch on fixed buffers, and the non-finite record outside compress()
x2, words = x.reshape(r, c), Q._as_words(x.reshape(r, c), bits)
grid, block, meta, launches = Q._word_quant_plan(r, c // per, words.stride(0), x.dtype, bits, g, False, 20, False)
bufs = (torch.empty((r * c // g, g * bits // 8), dtype=torch.uint8, device=dev),
        torch.empty(r * c // g, dtype=Q.PARAM_DTYPE, device=dev), torch.empty(r * c // g, dtype=Q.PARAM_DTYPE, device=dev))
outl = torch.empty((r, 20), dtype=x.dtype, device=dev)
tables = (Q._outlier_table(idx, "start", c, block), Q._outlier_table(idx, "lanes", c, block),
          Q._outlier_table(idx, "words", c, per), outl)
flag = NF.host_flag(dev)
kargs = (words, x2, *bufs, *tables, flag, r, c // per, words.stride(0), 20, 0)


def find_alone():
    Nonfinite.find(x2, NF.host_flag(dev), idx, repair=lambda: None)


for k, v in compare({"launch alone (direct)": lambda: L.launch(Q._quant_words_kernel, grid, launches, kargs, meta),
                     "Nonfinite.find alone (queued, settled by later calls)": find_alone}).items():
    rows.append(("3b " + k, v))

# cProfile of 3000 calls: where the host time goes, by own time (cProfile inflates Python calls: read as shares)
import cProfile, io, pstats  # noqa: E401,E402
pr = cProfile.Profile()
pr.enable()
for _ in range(3000):
    Q.quantize_triton(x, 2, 64, False, 'group', idx)
pr.disable()
torch.cuda.synchronize()
NF.settle_background(True)
buf = io.StringIO()
pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(28)
profile_text = buf.getvalue()

# 4. a caller's do_bench at 64 MiB
big = torch.randn(((64 << 20) // (2 * C), C), generator=gen, device=dev).to(torch.bfloat16)
big[:, idx.long()] *= 40
dst = torch.empty_like(big)
copy_us = triton.testing.do_bench(lambda: dst.copy_(big), return_mode="median") * 1e3
for bits in (2, 4):
    for direct in (True, False):
        L.DIRECT = direct
        q = Q.quantize(big, bits, 64, False, "group", idx)
        moved = big.numel() * 2 + q.nbytes
        us = triton.testing.do_bench(lambda: Q.quantize(big, bits, 64, False, "group", idx), return_mode="median") * 1e3
        NF.settle_background(True)
        pct = 100 * (moved / us) / (2 * big.numel() * 2 / copy_us)
        rows.append((f"4 do_bench quantize() 64 MiB {bits} bits, outliers, direct {direct}: {pct:.1f}% of copy", us))
        usd = triton.testing.do_bench(lambda: Q.dequantize(q), return_mode="median") * 1e3
        pct = 100 * (moved / usd) / (2 * big.numel() * 2 / copy_us)
        rows.append((f"4 do_bench dequantize() 64 MiB {bits} bits, outliers, direct {direct}: {pct:.1f}% of copy",
                     usd))
L.DIRECT = True
rows.append(("4 do_bench copy 64 MiB", copy_us))

# 5. bytes
ok = True
for bits in (2, 4):
    for oi in (None, idx):
        ref = Q.quantize_ref(x, bits, 64, False, 'group', oi)
        for _ in range(3):
            got = Q.quantize_triton(x, bits, 64, False, 'group', oi)
            ok &= all(torch.equal(getattr(got, f), getattr(ref, f)) for f in ("packed", "scale", "zero"))
            ok &= torch.equal(Q.dequantize_triton(got).view(torch.int16), Q.dequantize_ref(ref).view(torch.int16))
bad = x.clone()
bad[3, 5], bad[100, 4000] = float("nan"), float("inf")
got = Q.quantize_triton(bad, 2, 64, False, 'group', idx)  # outside compress: queued, settled on read
ref = Q.quantize_ref(bad, 2, 64, False, 'group', idx)
ok &= torch.equal(Q.dequantize_triton(got).view(torch.int16), Q.dequantize_ref(ref).view(torch.int16))  # decode first
got = Q.quantize_triton(bad, 2, 64, False, 'group', idx)
ok &= got.nbytes == ref.nbytes
rows.append((f"5 direct launches and queued checks give the reference's bytes, sizes and values: {ok}", 0.0))

print(profile_text[-9000:])
print(torch.cuda.get_device_name(), torch.__version__)
print(f"{'what':<92} {'us':>8}")
for name, us in rows:
    print(f"{name:<92} {us:8.2f}")
