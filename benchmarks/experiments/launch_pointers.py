"""Host time of a direct launch (NOTE [Direct launch] in kernels/launch.py) with tensor arguments against the same
launch with the tensors' addresses passed as ints (session 41). For a tensor, Triton 3.6's C launcher calls its
``data_ptr()`` through Python and asks the CUDA driver (``cuPointerGetAttribute``) whether the address is a device
one; an int goes straight in. The word quantize kernel takes ~10 pointers a launch, the LoRA sum 3.

Launches captured from real calls (the LoRA sum; a 2-bit word quantize with outliers; a 4-bit token-group quantize),
then timed four ways: ``launch(...)`` as shipped, as session 40 shipped it (NOTE [Direct launch] rule 6's
trims undone), the compiled launcher's C function with the tensors, the same with the addresses converted in the
timed call. Warm: best of 5 loops of 2000 calls. Cold: each call right after a
walk over ~200k dicts that pushes the host's caches out (as ``cold_state.py``), median of 300. Run on the GPU
machine: ``PYTHONPATH=. python benchmarks/experiments/launch_pointers.py``."""
import statistics
import sys
import time

sys.path.insert(0, '.')
import torch  # noqa: E402

from hyclora_hooks.kernels import launch as L, lora_sum as LS, nonfinite as NF, quant as Q  # noqa: E402

dev = torch.device('cuda')
gen = torch.Generator(device=dev).manual_seed(0)
captured = []
_real = L.launch


def _capture(kernel, grid, cache, args, meta):
    captured.append((kernel, grid, cache, args, meta))
    return _real(kernel, grid, cache, args, meta)


x = torch.randn((256, 4096), generator=gen, device=dev).to(torch.bfloat16)  # small: the host sets the rate
lora = torch.randn((256, 4096), generator=gen, device=dev)
idx = torch.sort(torch.randperm(4096, generator=gen, device=dev)[:20]).values.to(torch.int16)
keep = []
for name, call in (("LoRA sum", lambda: LS.lora_sum(x, lora, 2.0)),
                   ("word quantize 2 bits + outliers", lambda: Q.quantize_triton(x, 2, 64, False, "group", idx)),
                   ("token quantize 4 bits", lambda: Q.quantize_triton(x.view(2, 128, 4096), 4, 128, False,
                                                                       "token_group"))):
    for _ in range(2):  # compile, then the cached launcher
        keep.append(call())
    LS.launch = Q.launch = _capture  # (each module binds the name at import)
    keep.append(call())
    LS.launch = Q.launch = _real
    captured[-1] = (name,) + captured[-1]
torch.cuda.synchronize()
NF.settle_background(True)
launches = [c for c in captured if isinstance(c[0], str)]

_junk = [{i: i} for i in range(200_000)]


def evict() -> None:
    s = 0
    for d in _junk:
        s += d.get(0, 1)


def _hooked_s40(hook) -> bool:
    return hook is not None and bool(getattr(hook, "calls", True))


def _key_of_s40(device, args):
    try:
        return (device, *map(L._spec, args, L._NO, L._YES, L._YES))
    except Exception:  # noqa: BLE001
        return None


def launch_s40(kernel, grid, cache, args, meta) -> None:
    """``launch`` as session 40 shipped it (its checks and key in helpers, the device through
    ``torch.cuda.current_device``), the cached path only."""
    if not L.DIRECT or not L._bind() or type(kernel) is not L._jit_type or _hooked_s40(L._knobs.launch_enter_hook) \
            or _hooked_s40(L._knobs.launch_exit_hook):
        raise AssertionError("the direct path is on")
    device = torch.cuda.current_device()
    key = _key_of_s40(device, args)
    run, c_run, settings, function, metadata, tail = cache.get(key)
    n = len(grid)
    c_run(grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1, torch._C._cuda_getCurrentRawStream(device),
          function, *settings, metadata, None, None, None, *args, *tail)


def ways(kernel, grid, cache, args, meta) -> dict:
    device = torch.cuda.current_device()
    run, c_run, settings, function, metadata, tail = cache[(device, *map(L._spec, args, L._NO, L._YES, L._YES))]
    stream = torch._C._cuda_getCurrentRawStream(device)
    n = len(grid)
    g = (grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1)

    def shipped():
        L.launch(kernel, grid, cache, args, meta)

    def tensors():
        c_run(*g, stream, function, *settings, metadata, None, None, None, *args, *tail)

    def ints():
        c_run(*g, stream, function, *settings, metadata, None, None, None,
              *[a.data_ptr() if type(a) is torch.Tensor else a for a in args], *tail)

    def s40():
        launch_s40(kernel, grid, cache, args, meta)

    return {"launch() as shipped": shipped, "launch() of session 40": s40, "C launcher, tensors": tensors,
            "C launcher, addresses": ints}


rows = []
for name, kernel, grid, cache, args, meta in launches:
    named = ways(kernel, grid, cache, args, meta)
    pointers = sum(type(a) is torch.Tensor for a in args)
    warm = {k: float("inf") for k in named}
    for _ in range(5):
        for k, fn in named.items():
            t0 = time.perf_counter()
            for _ in range(2000):
                fn()
            warm[k] = min(warm[k], (time.perf_counter() - t0) / 2000 * 1e6)
            torch.cuda.synchronize()
    cold = {k: [] for k in named}
    for _ in range(300):
        for k, fn in named.items():
            evict()
            t0 = time.perf_counter()
            fn()
            cold[k].append((time.perf_counter() - t0) * 1e6)
        torch.cuda.synchronize()
    for k in named:
        rows.append((name, pointers, k, warm[k], statistics.median(cold[k])))
    torch.cuda.synchronize()

print(f"{torch.cuda.get_device_name()} | torch {torch.__version__}")
print("| launch | tensor args | way | warm us | cold us |")
print("|---|---|---|---|---|")
for name, p, k, w, c in rows:
    print(f"| {name} | {p} | {k} | {w:.2f} | {c:.2f} |")
