"""Uniform low-bit quantization per group of consecutive elements: the plain-PyTorch reference.

Groups are ``group_size`` consecutive elements of the tensor in row-major order. When the last dimension is a
multiple of ``group_size`` (every real hidden size) these are groups along the last dimension; a smaller or
ragged last dimension shares groups across rows instead of padding every row (a 16-wide head dimension would
otherwise waste three quarters of each group). Layout, for ``n`` elements padded up to ``G*ceil(n/G)``:

* ``packed``: ``ngroups x G*bits/8`` uint8; code ``j`` of a byte sits in bits ``[j*bits, (j+1)*bits)``,
  so at 2 bits four consecutive codes share one byte (``8 // bits`` per byte).
* ``scale`` (and ``zero`` when asymmetric): ``ngroups`` bfloat16.

Asymmetric: ``zero`` is the group minimum rounded *down* to bf16 and ``scale`` is ``(max - zero) / (2^bits - 1)``
rounded *up* to bf16, so the bf16 grid still covers ``[min, max]``; ``code = clamp(floor((x - zero) / scale + 1/2),
0, 2^bits - 1)`` and ``x_hat = code * scale + zero``. Symmetric: ``qmax = 2^(bits-1) - 1``, ``scale = amax / qmax``
rounded up, ``code = clamp(floor(x / scale + 1/2), -qmax, qmax) + qmax``.

Error bound (every finite element): ``|x - x_hat| <= scale / 2`` computed in fp32, plus one rounding of
``x_hat`` to the output dtype (relative ``2^-8`` for bf16, ``2^-11`` for fp16, none for fp32).
Non-finite values (NaN, +-Inf) are stored exactly at their own positions and replaced by 0 before the group
statistics, so they never disturb another group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PARAM_DTYPE = torch.bfloat16  # bf16 keeps fp32's range (no overflow for huge activations) at 2 bytes a group


@dataclass
class QuantizedGroups:
    """What the quantizer keeps: packed codes, per-group parameters, and the exact non-finite values."""

    packed: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    nonfinite_index: torch.Tensor | None  # flat int64 positions in row-major order
    nonfinite_value: torch.Tensor | None
    shape: torch.Size
    dtype: torch.dtype
    bits: int
    group_size: int

    @property
    def nbytes(self) -> int:
        """Bytes held, exactly: every tensor here is compact (no view of a larger storage)."""
        held = [self.packed, self.scale, self.zero, self.nonfinite_index, self.nonfinite_value]
        return sum(t.untyped_storage().nbytes() for t in held if t is not None)


def _round_bf16(v: torch.Tensor, up: bool) -> torch.Tensor:
    """Round fp32 ``v`` to bf16 toward +inf (``up``) or -inf, so the stored grid still covers the data."""
    r = v.to(PARAM_DTYPE)
    target = torch.full_like(r, float("inf") if up else float("-inf"))
    off = (r.float() < v) if up else (r.float() > v)
    return torch.where(off, torch.nextafter(r, target), r)


def quantize_ref(x: torch.Tensor, bits: int, group_size: int, symmetric: bool = False) -> QuantizedGroups:
    """Quantize ``x`` (any float dtype and shape, any strides) into :class:`QuantizedGroups`."""
    shape, dtype, g = x.shape, x.dtype, group_size
    flat = x.reshape(-1).float()
    n = flat.numel()
    ngroups = -(-n // g)

    bad = ~torch.isfinite(flat)
    nf_index = nf_value = None
    if bool(bad.any()):
        nf_index = bad.nonzero().squeeze(1)
        nf_value = x.reshape(-1)[nf_index].clone()
        flat = torch.where(bad, torch.zeros((), dtype=flat.dtype, device=flat.device), flat)

    pad = ngroups * g - n
    groups = torch.nn.functional.pad(flat, (0, pad)).view(ngroups, g)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        amax = groups.abs().amax(dim=-1)  # padding is 0, which never raises amax
        scale = _round_bf16(amax / qmax, up=True)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        codes = torch.floor(groups / scale.float().unsqueeze(-1) + 0.5).clamp(-qmax, qmax) + qmax
        zero = None
    else:
        levels = 2**bits - 1
        if pad:  # padding takes the last real value, so it never widens the last group's range
            groups.view(-1)[n:] = flat[-1] if n else 0.0
        lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)
        zero = _round_bf16(lo, up=False)
        scale = _round_bf16((hi - zero.float()) / levels, up=True)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        codes = torch.floor((groups - zero.float().unsqueeze(-1)) / scale.float().unsqueeze(-1) + 0.5)
        codes = codes.clamp(0, levels)
    packed = pack_codes(codes.to(torch.uint8), bits)
    return QuantizedGroups(packed, scale, zero, nf_index, nf_value, shape, dtype, bits, group_size)


def dequantize_ref(q: QuantizedGroups) -> torch.Tensor:
    """Rebuild a contiguous tensor of the original shape and dtype from :class:`QuantizedGroups`."""
    codes = unpack_codes(q.packed, q.bits).float()
    if q.zero is None:
        qmax = 2 ** (q.bits - 1) - 1
        groups = (codes - qmax) * q.scale.float().unsqueeze(-1)
    else:
        groups = codes * q.scale.float().unsqueeze(-1) + q.zero.float().unsqueeze(-1)
    n = q.shape.numel()
    out = groups.view(-1)[:n].to(q.dtype)
    if q.nonfinite_index is not None:
        out[q.nonfinite_index] = q.nonfinite_value
    return out.view(q.shape)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``groups x G`` uint8 codes (each < 2^bits) into ``groups x G*bits/8`` bytes, low bits first."""
    per = 8 // bits
    if per == 1:
        return codes.contiguous()
    c = codes.view(codes.shape[0], -1, per).to(torch.int32)
    shifts = torch.arange(per, device=codes.device, dtype=torch.int32) * bits
    return (c << shifts).sum(dim=-1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`."""
    per = 8 // bits
    if per == 1:
        return packed
    shifts = torch.arange(per, device=packed.device, dtype=torch.int32) * bits
    c = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & (2**bits - 1)
    return c.view(packed.shape[0], -1).to(torch.uint8)
