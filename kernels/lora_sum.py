"""peft's LoRA sum in one pass each way, with torch's bits: ``(base + lora * scaling).to(base.dtype)`` forward, and
its gradients backward (``grad`` for ``base``, ``grad.float() * scaling`` for ``lora``).

Why: peft's ``lora.Linear`` adds its fp32 adapter branch to the 16-bit base output in three ATen passes (the
scaling's ``mul``, the mixed-dtype ``add`` into fp32, the cast back) and takes three more in backward (the cast of
the gradient to fp32, the add's cast back to the base's dtype, the scaling's ``mul``): 24 + 20 bytes an output
element, against 8 + 6 here. On a Llama layer that is every projection's output, q to down (docs/benchmarks.md
session 40). ``hyclora_hooks/lora_sum.py`` makes the two passes one autograd node.

Bits: ATen computes ``lora * scaling`` in fp32 (the Python scalar cast to fp32), adds the widened base in fp32,
then rounds once to the base's dtype; the kernel does the same ops in that order with no fused multiply-add
(``enable_fp_fusion=False``) and rounds by the bits (``swiglu._round``: the GPU's nearest even, which the
interpreter's own casts do not give). Backward, the base's gradient is the incoming one (fp32 and back is exact)
and the adapter's is ``fp32(grad) * fp32(scaling)``, as ATen's ``mul`` computes it.
"""

from __future__ import annotations

import torch

from . import swiglu
from .jit import once
from .launch import cuda_device, launch
from .quant import use_triton

_BLOCK = 1024
_WARPS = 4
_launches: dict = {}


def lora_sum_ref(base: torch.Tensor, lora: torch.Tensor, scaling: float) -> torch.Tensor:
    """peft's own ops (the CPU path and the oracle)."""
    return (base + lora * scaling).to(base.dtype)


def scaled_grad_ref(grad: torch.Tensor, scaling: float) -> torch.Tensor:
    """The adapter branch's gradient as peft's backward makes it: the cast to fp32, then the scaling's ``mul``."""
    return grad.to(torch.float32) * scaling


def fits(base: torch.Tensor, lora: torch.Tensor, scaling: object) -> bool:
    """The case both passes cover: a 16-bit or fp32 ``base`` and an fp32 ``lora``, plain tensors of one shape,
    both contiguous, on the CPU or the current CUDA device (a launch goes to the current device's stream; a backward
    runs on its device's own thread), and a Python ``float`` or ``int`` scaling (peft's ``lora_alpha / r``)."""
    return (type(lora) is torch.Tensor and lora.dtype == torch.float32 and base.shape == lora.shape
            and base.device == lora.device and lora.is_contiguous() and base_fits(base, scaling))


def base_fits(base: torch.Tensor, scaling: object) -> bool:
    """:func:`fits`'s conditions on ``base`` and ``scaling`` alone (a branch not computed yet)."""
    return (type(scaling) in (float, int) and type(base) is torch.Tensor and base.dtype in swiglu.KINDS
            and base.is_contiguous() and (not base.is_cuda or base.get_device() == cuda_device()))


def lora_sum(base: torch.Tensor, lora: torch.Tensor, scaling: float, backend: str = "auto") -> torch.Tensor:
    """``(base + lora * scaling).to(base.dtype)`` for tensors that :func:`fit <fits>`: one Triton pass on CUDA
    (``backend="auto"``), else :func:`lora_sum_ref`; the same bits either way. ``backend="triton"`` forces the
    kernel (on CPU only under ``TRITON_INTERPRET=1``), ``"ref"`` the reference."""
    if backend == "ref" or (backend == "auto" and not use_triton(base)):
        return lora_sum_ref(base, lora, scaling)
    out = torch.empty_like(base)
    _run(0, base, lora, out, scaling)
    return out


def scaled_grad(grad: torch.Tensor, scaling: float, backend: str = "auto") -> torch.Tensor:
    """``grad.to(torch.float32) * scaling`` for a contiguous 16-bit or fp32 ``grad``: one Triton pass on CUDA, else
    :func:`scaled_grad_ref`; the same bits either way."""
    if (backend == "ref" or (backend == "auto" and not use_triton(grad)) or not grad.is_contiguous()
            or grad.dtype not in swiglu.KINDS):
        return scaled_grad_ref(grad, scaling)
    out = torch.empty(grad.shape, dtype=torch.float32, device=grad.device)
    _run(1, grad, grad, out, scaling)
    return out


def _run(op: int, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, scaling: float) -> None:
    _build()
    n = a.numel()
    if n:
        int64 = n + _BLOCK > 2**31 - 1
        kind = swiglu.KINDS.index(out.dtype if op == 0 else a.dtype)
        launch(_lora_sum_kernel, (-(-n // _BLOCK),), _launches.setdefault((op, kind, int64), {}),
               (a, b, out, n, float(scaling)),
               dict(OP=op, KIND=kind, INT64=int64, BLOCK=_BLOCK, num_warps=_WARPS, enable_fp_fusion=False))


# ------------------------------------------------------------------------------------------ Triton kernel
# A plain function until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
_round = None  # kernels/swiglu.py's jitted rounding, bound by _build


def _lora_sum_kernel(a_ptr, b_ptr, o_ptr, N, S, OP: tl.constexpr, KIND: tl.constexpr, INT64: tl.constexpr,
                     BLOCK: tl.constexpr):
    """OP 0: o = round_KIND(a + b * S) (a of dtype KIND, b fp32); OP 1: o = a * S in fp32 (a of dtype KIND)."""
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    a = tl.load(a_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if OP == 0:  # S: an fp32 argument (Triton's type of a Python float), as ATen casts the scalar
        b = tl.load(b_ptr + offs, mask=m, other=0.0)
        v = _round(a + b * S, KIND)
    else:
        v = a * S
    tl.store(o_ptr + offs, v, mask=m)


@once
def _build() -> None:
    swiglu.build_with_round(globals(), ("_lora_sum_kernel",))
