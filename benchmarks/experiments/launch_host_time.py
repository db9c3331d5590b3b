"""Host time of a quantize call on a GPU machine (session 7): the whole call on a 1 MiB tensor (the GPU is never the
limit), dequantize, the Triton JIT launch of the word kernel against its compiled kernel's launcher, and small torch
calls on the launch path. Run from the repository root: ``PYTHONPATH=. python benchmarks/experiments/launch_host_time.py``."""
import sys, time, inspect
sys.path.insert(0, '.')
import torch
from hyclora_hooks.kernels import quant as Q, nonfinite as NF
from hyclora_hooks.kernels.nonfinite import collecting
dev = torch.device('cuda')
g = torch.Generator(device=dev).manual_seed(0)
x = torch.randn((256, 4096), generator=g, device=dev).to(torch.bfloat16)
idx = torch.sort(torch.randperm(4096, generator=g, device=dev)[:20]).values.to(torch.int16)
Q._build()
def per(fn, n=1000):
    for _ in range(50): fn()
    torch.cuda.synchronize()
    best = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n): fn()
        best.append((time.perf_counter() - t0) / n * 1e6)
        torch.cuda.synchronize()
    return min(best)
pend = []
def enc(bits, oi):
    while len(pend) > 2: pend.pop(0).settle()
    with collecting(pend.append):
        return Q.quantize_triton(x, bits, 64, False, 'group', oi)
for bits in (2, 4):
    for oi in (None, idx):
        print(f"quantize_triton 1 MiB bits={bits} outliers={oi is not None}: {per(lambda: enc(bits, oi)):.1f} us/call")
q = Q.quantize_triton(x, 2, 64, False, 'group', idx)
print(f"dequantize_triton: {per(lambda: Q.dequantize_triton(q)):.1f} us/call")
# capture the word kernel's launch
real = Q._quant_words_kernel
cap = {}
class Spy:
    def __getitem__(self, grid):
        def f(*args, **kw):
            cap['grid'], cap['args'], cap['kw'] = grid, args, kw
            cap['compiled'] = real[grid](*args, **kw)
        return f
Q._quant_words_kernel = Spy()
enc(2, idx); torch.cuda.synchronize()
Q._quant_words_kernel = real
grid, args, kw, ck = cap['grid'], cap['args'], cap['kw'], cap['compiled']
print("jit launch:", f"{per(lambda: real[grid](*args, **kw)):.1f} us")
names = list(inspect.signature(real.fn).parameters)
allargs = list(args) + [kw[n] for n in names[len(args):]]
stream = torch.cuda.current_stream().cuda_stream
fn, md = ck.function, ck.packed_metadata
run = ck.run
print("compiled.run:", f"{per(lambda: run(grid[0], 1, 1, stream, fn, md, None, None, None, *allargs)):.1f} us")
print("raw stream lookup:", f"{per(lambda: torch._C._cuda_getCurrentRawStream(0)):.2f} us")
print("torch.cuda.current_stream().cuda_stream:", f"{per(lambda: torch.cuda.current_stream().cuda_stream):.2f} us")
print("torch.empty:", f"{per(lambda: torch.empty(1024, device=dev)):.2f} us")
print("Event record:", f"{per(lambda: NF._event().record()):.2f} us")
from triton.runtime import driver
print("driver stream:", f"{per(lambda: driver.active.get_current_stream(driver.active.get_current_device())):.2f} us")
# correctness of compiled.run: same bytes
out1 = Q.quantize_triton(x, 2, 64, False, 'group', idx)
packed2 = torch.empty_like(out1.packed)
a2 = list(allargs); a2[2] = packed2
run(grid[0], 1, 1, stream, fn, md, None, None, None, *a2); torch.cuda.synchronize()
print("compiled.run same packed:", torch.equal(packed2, out1.packed))
