"""FP8 (e4m3) with one bf16 scale per group of consecutive elements: the plain-PyTorch reference (also the GPU
path: a cast is one fused elementwise op in torch).

Layout for ``n`` elements, groups of ``G`` in row-major order (``ceil(n/G)`` groups, the last padded):
``codes`` ``ceil(n/G) x G`` float8_e4m3fn and ``scale`` ``ceil(n/G)`` bf16, with ``scale`` = the group's finite
absolute maximum / 448 rounded *up* to bf16 (so ``x / scale`` never passes e4m3's largest value, 448), 1 for an
all-zero group. ``x_hat = fp8(x / scale) * scale``.

Error bound per finite element: ``|x - x_hat| <= max(|x| * 2^-4, scale * 2^-10)`` (e4m3 keeps 3 mantissa bits:
half an ulp is 2^-4 relative for normal values; subnormal steps are ``2^-9 * scale``), up to fp32 arithmetic,
plus one rounding to the output dtype. Non-finite values are excluded from the scale and stored exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .nonfinite import Nonfinite
from .quant import PARAM_DTYPE, round_bf16

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


@dataclass
class Fp8Groups:
    codes: torch.Tensor
    scale: torch.Tensor
    nonfinite: Nonfinite | None
    shape: torch.Size
    dtype: torch.dtype
    group_size: int

    @property
    def nbytes(self) -> int:
        nf = Nonfinite.nbytes_of(self.nonfinite)
        return nf + sum(t.untyped_storage().nbytes() for t in (self.codes, self.scale))


def fp8_encode_ref(x: torch.Tensor, group_size: int) -> Fp8Groups:
    shape, dtype, g = x.shape, x.dtype, group_size
    flat = x.reshape(-1)
    n = flat.numel()
    ngroups = -(-n // g)
    xf = flat.float()
    finite = torch.isfinite(xf)
    nonfinite = Nonfinite.find(flat.view(1, -1), (~finite).sum())
    if nonfinite is not None:  # may be pending on a GPU (kernels/nonfinite.py): zero them without asking
        xf = torch.where(finite, xf, torch.zeros((), device=x.device))
    groups = torch.nn.functional.pad(xf, (0, ngroups * g - n)).view(ngroups, g)
    scale = round_bf16(groups.abs().amax(dim=1) / FP8_MAX, up=True) if n else torch.zeros(0, dtype=PARAM_DTYPE)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    codes = (groups / scale.float().unsqueeze(1)).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return Fp8Groups(codes, scale, nonfinite, shape, dtype, g)


def fp8_decode_ref(q: Fp8Groups) -> torch.Tensor:
    n = q.shape.numel()
    vals = (q.codes.float() * q.scale.float().unsqueeze(1)).view(-1)[:n].to(q.dtype)
    if q.nonfinite is not None:
        q.nonfinite.restore(vals)
    return vals.view(q.shape)
