"""``log_softmax(x.float(), dim=-1)`` of 16-bit logits in one pass that reads them as they are, with torch's bits: the
plain-PyTorch reference and a Triton kernel.

Why: under every ``inter`` policy the cross-entropy head keeps the lm_head's input and replays the head in backward
(``hyclora_hooks/engine.py``, ``_log_softmax_recipe``): the logits' GEMM, Hugging Face's ``logits.float()`` and
torch's fp32 ``log_softmax``. The cast writes an fp32 copy of the logits that only ``log_softmax`` reads: at 4 x 1024
tokens and a 32000-word vocabulary 0.62 ms for both on an H200 against 0.28 ms for one pass from the bf16 logits to
the fp32 result, 6 bytes an element moved instead of 14 (docs/benchmarks.md session 31).
torch's own ``_log_softmax(x, dim, half_to_float=True)`` would read 16-bit input too, but takes fp16 only.

Bits: torch (``aten/src/ATen/native/cuda/SoftMax.cu``, ``cunn_SoftMaxForward``) gives a row of V > 1024 fp32 values
a block of 1024 threads. Each thread keeps a running maximum and, after the block's maximum ``m`` is known, a running
sum of ``expf(x - m)`` over its own elements in a fixed order: vectors of 4 (``ILP``) at ``4 * thread + 4096 * k``
while whole 4096-element chunks last, then single elements at ``tail + thread + 1024 * j``. The 1024 sums are then
added by warp shuffles (pairs 16 lanes apart, then 8, 4, 2, 1), and the 32 warps' sums the same way. The output is
``(x - m) - logf(sum)``. The kernel keeps the 1024 running sums as a vector, adds each element's term in that
order, and adds the vector's halves in the shuffles' tree: the same fp32 additions, so the same sum, and with
libdevice's ``expf``/``logf`` (CUDA's) the same result bit for bit. The maximum needs no order. torch takes that
path where the row is too long for its shared-memory variant (``V >= (sharedMemPerBlock - 128) / 4``, 12256 on
NVIDIA's GPUs) and, here, where V is a multiple of 4 (then every row is 16-byte aligned and torch's unaligned head
is empty); other rows go through the reference. Checked bit for bit against torch on a GPU by
``tools/check_log_softmax.py``; under ``TRITON_INTERPRET=1`` numpy's ``exp``/``log`` stand in for CUDA's.
"""

from __future__ import annotations

import torch

from . import swiglu
from .jit import build, once
from .launch import launch
from .quant import use_triton

_THREADS = 1024  # torch's block for rows longer than 1024 (SoftMaxForward_getBlockSize)
_ILP = 4  # torch's vector of fp32 (sizeof(float4) / sizeof(float))
_WARPS = 16  # H200, 4096 x 32000 bf16: 0.344 / 0.298 / 0.283 ms at 4 / 8 / 16 warps (docs/benchmarks.md session 31)
_launches: dict = {}


def log_softmax_ref(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log_softmax(x.float(), dim)`` by torch's own ops (the CPU path and the oracle)."""
    return torch.log_softmax(x.to(torch.float32), dim)


def log_softmax_ordered(x: torch.Tensor, exp=torch.exp, log=torch.log) -> torch.Tensor:
    """The kernel's arithmetic in plain PyTorch, along the last dim of a tensor that :func:`fusable` takes: the same
    fp32 operations in the same order (the module's docstring), so on a GPU the same bits as torch's own fp32
    ``log_softmax``. ``exp``/``log`` stand in for CUDA's (tests pass numpy's, which the interpreter runs)."""
    v = x.shape[-1]
    x32 = x.to(torch.float32).reshape(-1, v)
    m = x32.amax(dim=1, keepdim=True).clamp_min(-torch.finfo(torch.float32).max)
    e = exp(x32 - m)
    chunk = _THREADS * _ILP
    main = v - v % chunk
    acc = torch.zeros(x32.shape[0], _THREADS, dtype=torch.float32, device=x.device)
    for start in range(0, main, chunk):
        vectors = e[:, start:start + chunk].reshape(-1, _THREADS, _ILP)
        for j in range(_ILP):
            acc = acc + vectors[:, :, j]
    for start in range(main, v, _THREADS):
        seg = e[:, start:start + _THREADS]
        acc[:, :seg.shape[1]] += seg
    for groups in (_THREADS // 32, 1):  # within each warp, then across the warps' sums
        acc = acc.reshape(-1, groups, 32)
        for h in (16, 8, 4, 2, 1):
            acc = acc[..., :h] + acc[..., h:2 * h]
        acc = acc.reshape(-1, groups)
    return ((x32 - m) - log(acc)).reshape(x.shape)


def _torch_block_path(v: int, device: torch.device) -> bool:
    """Does torch's fp32 ``log_softmax`` of rows of ``v`` values take ``cunn_SoftMaxForward`` (one block of 1024
    threads a row, no shared-memory copy of the row)? (``host_softmax`` in SoftMax.cu.)"""
    if v <= 1024 or torch.version.hip is not None:  # the persistent warp softmax; ROCm's 64-lane warps add otherwise
        return False
    smem = torch.cuda.get_device_properties(device).shared_memory_per_block if device.type == "cuda" else 49152
    return v >= (smem - (_THREADS // 32) * 4) // 4


def fusable(x: torch.Tensor, dim: int = -1) -> bool:
    """The kernel's case: a contiguous 16-bit ``x`` reduced along its last dim, whose length V is a multiple of 4
    and long enough that torch would run its block kernel (the one the kernel reproduces)."""
    if x.dtype not in swiglu.HALVES or x.dim() < 1 or dim not in (-1, x.dim() - 1) or not x.is_contiguous():
        return False
    v = x.shape[-1]
    return v % _ILP == 0 and v < 2**31 - 2 * _THREADS * _ILP and _torch_block_path(v, x.device)


def log_softmax(x: torch.Tensor, dim: int = -1, backend: str = "auto") -> torch.Tensor:
    """``log_softmax(x.float(), dim)``: one Triton pass on CUDA (``backend="auto"``) where :func:`fusable`, else
    :func:`log_softmax_ref`; the same bits either way on a GPU. ``backend="triton"`` forces the kernel (on CPU only
    under ``TRITON_INTERPRET=1``), ``"ref"`` the reference."""
    if backend == "ref" or (backend == "auto" and not use_triton(x)) or not fusable(x, dim):
        return log_softmax_ref(x, dim)
    return log_softmax_triton(x)


def log_softmax_triton(x: torch.Tensor) -> torch.Tensor:
    """The kernel path of :func:`log_softmax` along the last dim (the caller checks :func:`fusable`)."""
    _build()
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    v = x.shape[-1]
    rows = x.numel() // v if v else 0
    if rows:
        chunk = _THREADS * _ILP
        main = v - v % chunk  # torch's vectorized part of a row; the rest is its scalar tail
        meta = dict(V=v, MAIN=main, THREADS=_THREADS, ILP=_ILP, CHUNK=chunk, TAIL=-(-(v - main) // _THREADS),
                    num_warps=_WARPS, enable_fp_fusion=False)
        launch(_log_softmax_kernel, (rows,), _launches.setdefault(v, {}), (x, out), meta)
    return out


# ------------------------------------------------------------------------------------------ Triton kernel
# Plain functions until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
libdevice = None  # kernels/swiglu.py's: CUDA's libdevice, or numpy's functions under the interpreter


def _warp_sums(v, ROWS: tl.constexpr):
    """Each row's sum of ``v`` (ROWS x 32 lanes) in a warp shuffle's order: lane i + lane i + 16 first, then 8, 4,
    2, 1 apart (torch's WarpReduce; fp32 addition is commutative, so which of a pair holds it does not matter)."""
    v = tl.sum(tl.reshape(v, (ROWS, 2, 16)), axis=1)
    v = tl.sum(tl.reshape(v, (ROWS, 2, 8)), axis=1)
    v = tl.sum(tl.reshape(v, (ROWS, 2, 4)), axis=1)
    v = tl.sum(tl.reshape(v, (ROWS, 2, 2)), axis=1)
    return tl.sum(v, axis=1)


def _log_softmax_kernel(x_ptr, o_ptr, V: tl.constexpr, MAIN: tl.constexpr, THREADS: tl.constexpr, ILP: tl.constexpr,
                        CHUNK: tl.constexpr, TAIL: tl.constexpr):
    # V and MAIN compile in (one kernel per vocabulary size): the interpreter cannot loop to a runtime bound
    row = tl.program_id(0).to(tl.int64) * V
    x_ptr += row
    o_ptr += row
    flat = tl.arange(0, CHUNK)
    # the row's maximum (any order gives it); torch starts from -FLT_MAX, which an all -inf row keeps
    top = tl.full((CHUNK,), -3.4028234663852886e38, tl.float32)
    for start in tl.range(0, V, CHUNK):
        seg = tl.load(x_ptr + start + flat, mask=start + flat < V, other=float("-inf"))
        top = tl.maximum(top, seg.to(tl.float32))
    m = tl.max(top, axis=0)
    # each thread's running sum of expf(x - m), in torch's order
    lane = tl.arange(0, THREADS)
    vec = lane[:, None] * ILP + tl.arange(0, ILP)[None, :]
    acc = tl.zeros((THREADS,), tl.float32)
    for start in tl.range(0, MAIN, CHUNK):
        e = libdevice.exp(tl.load(x_ptr + start + vec).to(tl.float32) - m)
        even, odd = tl.split(tl.reshape(e, (THREADS, 2, 2)))  # ILP == 4: a vector's elements (0, 2) and (1, 3)
        e0, e2 = tl.split(even)
        e1, e3 = tl.split(odd)
        acc = (((acc + e0) + e1) + e2) + e3
    for j in tl.static_range(TAIL):
        at = MAIN + j * THREADS + lane
        tail = tl.load(x_ptr + at, mask=at < V, other=0.0).to(tl.float32)
        acc = tl.where(at < V, acc + libdevice.exp(tail - m), acc)
    warps = _warp_sums(tl.reshape(acc, (THREADS // 32, 32)), THREADS // 32)  # thread t in warp t // 32
    total = tl.sum(_warp_sums(tl.reshape(warps, (1, THREADS // 32)), 1), axis=0)  # the warps' sums, as one warp
    logsum = libdevice.log(total)
    for start in tl.range(0, V, CHUNK):
        m_at = start + flat < V
        x = tl.load(x_ptr + start + flat, mask=m_at, other=0.0).to(tl.float32)
        tl.store(o_ptr + start + flat, (x - m) - logsum, mask=m_at)  # torch's ``input - max_input - logsum``


@once
def _build() -> None:
    global libdevice
    swiglu._build()
    libdevice = swiglu.libdevice
    build(globals(), ("_warp_sums", "_log_softmax_kernel"))
