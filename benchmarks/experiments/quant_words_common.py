"""Set-up shared by the session-7 experiments on ``_quant_words_kernel`` (GPU only): GPU time of a call by the torch
profiler, a bf16 tensor with outlier channels, kernel variants made by editing the kernel's source, a call as
``compress()`` makes it, and the bit-exact check against the reference."""
import inspect
import os
import sys

import torch

sys.path.insert(0, ".")
from hyclora_hooks.kernels import quant as Q  # noqa: E402
from hyclora_hooks.kernels.nonfinite import collecting  # noqa: E402
from tools.bench_quant import timers  # noqa: E402
from variant_loader import load_kernel  # noqa: E402

_device_time = timers(True)[1]

C = 4096  # channels (a 7B hidden state)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dev_time(fn) -> float:
    """Microseconds of GPU work a call of ``fn`` launches (kernels, memsets, copies): ``tools/bench_quant.py``'s."""
    return _device_time(fn) * 1e6


def outlier_tensor(mib: int, gen: torch.Generator, k: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """``mib`` MiB of bf16 rows x C, ``k`` channels 40x larger (a residual stream's), and their sorted indices."""
    x = torch.randn(((mib << 20) // (2 * C), C), generator=gen, device=DEVICE).to(torch.bfloat16)
    idx = torch.sort(torch.randperm(C, generator=gen, device=DEVICE)[:k]).values.to(torch.int16)
    x[:, idx.long()] *= 40
    return x, idx


def copy_time(x: torch.Tensor) -> float:
    dst = torch.empty_like(x)
    return dev_time(lambda: dst.copy_(x))


def cases(bits_list=(2, 4)):
    """``(MiB, tensor, copy us, bits, outlier indices or None)`` over sizes (``QW_SIZES``, default 64,256,1024
    MiB), bits, without and with outliers; one tensor a size (seeded), freed before the next."""
    sizes = [int(s) for s in os.environ.get("QW_SIZES", "64,256,1024").split(",")]
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    for mib in sizes:
        x, idx = outlier_tensor(mib, gen)
        tc = copy_time(x)
        for bits in bits_list:
            for oi in (None, idx):
                yield mib, x, tc, bits, oi
        del x


def kernel_variants(edits: dict) -> dict:
    """``{"library": the kernel, name: the kernel with each (old, new) source edit of ``edits[name]`` applied}``."""
    Q._build()
    src = inspect.getsource(Q._quant_words_kernel.fn)
    kernels = {"library": Q._quant_words_kernel}
    header = ("import triton\nimport triton.language as tl\nfrom hyclora_hooks.kernels.quant import ("
              "_word_tile, _outlier_cols, _elem, _min_nan, _max_nan, _group_params, _hash_uniform)\n\n"
              "@triton.jit\n")
    for name, pairs in edits.items():
        s = src
        for old, new in pairs:
            assert old in s, (name, old)
            s = s.replace(old, new)
        kernels[name] = load_kernel(header, s, "_quant_words_kernel")
    return kernels


def encoder(x: torch.Tensor, bits: int, oi: torch.Tensor | None, granularity: str = "group"):
    """A quantize call as ``compress()`` makes it (non-finite check deferred), returning the payload."""
    sink: list = []

    def run():
        with collecting(sink.append):
            q = Q.quantize_triton(x, bits, 64, False, granularity, oi)
        sink.clear()
        return q
    return run


def exact(x: torch.Tensor, bits: int, oi: torch.Tensor | None) -> bool:
    """The kernel stores the reference's bytes on the first 2048 rows."""
    ref = Q.quantize_ref(x[:2048], bits, 64, False, "group", oi)
    got = Q.quantize_triton(x[:2048], bits, 64, False, "group", oi)
    return all(torch.equal(getattr(got, f), getattr(ref, f)) for f in ("packed", "scale", "zero"))


def pct_copy(x: torch.Tensor, payload_nbytes: int, t: float, t_copy: float) -> float:
    """Bytes moved (tensor read + payload written) a second, as a percentage of the copy's (2 x the tensor)."""
    return 100 * ((x.numel() * 2 + payload_nbytes) / t) / (2 * x.numel() * 2 / t_copy)
