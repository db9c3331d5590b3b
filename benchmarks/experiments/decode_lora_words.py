"""Gate's and up's backward rebuild as one kernel in the word layout: token-group decode plus the LoRA part (session 27).

Under ``intra_inter`` gate and up (tokens x 11008) are stored as their frozen term ``X·W`` in token groups and
rebuilt in the backward by two kernels: the word dequantize (``_dequant_words_kernel``) writes the term, then the
LoRA part kernel reads it back and adds ``s·(X·A)·B`` (~32 + ~65 us a tensor a layer at 4x1024, session 27's
profile, against ~28 us for the bytes a single pass must move). Sessions 17 and 19 fused the part into a codec
kernel from both ends and measured it slower: the element kernel's 128 x 16 tiles reloaded ``X·A`` for every 16
channels, and the dot's output had to be converted to the data's layout. This variant keeps the word kernel's tiles
(one token group tall, 64 words wide) and forms the part as one K = r dot per code position of the word (even and
odd channels apart), so each word is decoded, summed with its part and written once.

The same bits as the two kernels are required (checked first, every shape and width), then each variant's device time
against theirs (``triton.testing.do_bench``, medians). Not wired into the library: an experiment.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/decode_lora_words.py
    TRITON_INTERPRET=1 PYTHONPATH=. python benchmarks/experiments/decode_lora_words.py --small   # bits only, CPU
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks.kernels import lora_part as LP  # noqa: E402
from hyclora_hooks.kernels import quant as Q  # noqa: E402
from hyclora_hooks.kernels import rope_part as RP  # noqa: E402
from hyclora_hooks.kernels import swiglu as SW  # noqa: E402
from hyclora_hooks.kernels.jit import build  # noqa: E402
from hyclora_hooks.kernels.launch import launch  # noqa: E402

tl = None
_bf16_nearest = _to_bits = _to_half = _round = None  # the library's jitted helpers, bound by _build


def _decode_lora_kernel(packed_ptr, scale_ptr, zero_ptr, x_ptr, b_ptr, out_ptr, R, CW, NR, s_lora,
                        BITS: tl.constexpr, G: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr,
                        BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
    # one program: BLOCK_R rows (inside one token group of G) x BLOCK_W words (PER channels each), bf16 output
    PER: tl.constexpr = 8 // BITS
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    rows = pid_r.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    w = pid_c * BLOCK_W + tl.arange(0, BLOCK_W)
    rmask, wmask = rows < R, w < CW
    m2 = rmask[:, None] & wmask[None, :]
    pk = tl.load(packed_ptr + rows[:, None] * CW + w[None, :], mask=m2, other=0).to(tl.int32)
    k = tl.arange(0, BLOCK_K)
    kmask = k < NR
    x = tl.load(x_ptr + rows[:, None] * NR + k[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
    x = _to_half(x, 0)
    C = CW * PER
    grp = (pid_r * BLOCK_R) // G
    acc = tl.zeros((BLOCK_R, BLOCK_W), tl.int32)
    for j in tl.static_range(PER):
        ch = w * PER + j
        s = tl.load(scale_ptr + grp * C + ch, mask=wmask, other=1.0).to(tl.float32)
        z = tl.load(zero_ptr + grp * C + ch, mask=wmask, other=0.0).to(tl.float32)
        q = ((pk >> (BITS * j)) & (2**BITS - 1)).to(tl.float32)
        y = _bf16_nearest(q * s[None, :] + z[None, :])
        bj = tl.load(b_ptr + ch[None, :] * NR + k[:, None], mask=kmask[:, None] & wmask[None, :], other=0.0)
        bj = _to_half(bj * s_lora, 0)
        if IEEE:
            part = tl.dot(x.to(tl.float32), bj.to(tl.float32), input_precision="ieee")
        else:
            part = tl.dot(x, bj)
        o = _round(y + _round(part, 0), 0)
        acc = acc | (_to_bits(o, False) << (16 * j))
    if PER == 1:
        tl.store(out_ptr + rows[:, None] * CW + w[None, :], acc.to(tl.int16), mask=m2)
    else:
        tl.store(out_ptr + rows[:, None] * CW + w[None, :], acc, mask=m2)


_BUILT = False


def _build() -> None:
    global _BUILT, _bf16_nearest, _to_bits, _to_half, _round
    if _BUILT:
        return
    Q._build()
    RP._build()
    SW._build()
    _bf16_nearest, _to_bits, _to_half, _round = Q._bf16_nearest, Q._to_bits, RP._to_half, SW._round
    build(globals(), ("_decode_lora_kernel",))
    _BUILT = True


_LAUNCHES: dict = {}


def decode_lora(q, x: torch.Tensor, b: torch.Tensor, scale: float, block_r: int, block_w: int,
                warps: int) -> torch.Tensor:
    """``lora_combine(dequantize(q), x, b, scale, bf16, subtract=False)`` in one kernel (token groups, bf16, no
    outlier channels, nothing non-finite)."""
    _build()
    r, c = Q.as_matrix_shape(q.shape)
    per = 8 // q.bits
    cw = c // per
    nr = x.shape[-1]
    out = torch.empty((r, c), dtype=torch.bfloat16, device=x.device)
    ieee = os.environ.get("TRITON_INTERPRET", "0") == "1"
    meta = dict(BITS=q.bits, G=q.group_size, BLOCK_R=block_r, BLOCK_W=block_w,
                BLOCK_K=max(16, 1 << (nr - 1).bit_length()), IEEE=ieee, num_warps=warps)
    launch(_decode_lora_kernel, (-(-r // block_r), -(-cw // block_w)), _LAUNCHES.setdefault(tuple(meta.values()), {}),
           (q.packed, q.scale, q.zero, x.reshape(r, nr), b, out.view(Q._WORD[per]), r, cw, nr, float(scale)), meta)
    return out.view(q.shape)


def two_kernels(q, x, b, scale):
    return LP.lora_combine(Q.dequantize_triton(q), x, b, scale, torch.bfloat16, subtract=False, backend="triton")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="bits only, small shapes (for the interpreter)")
    a = p.parse_args()
    dev = torch.device("cpu" if a.small else "cuda")
    gen = torch.Generator(device="cpu").manual_seed(0)
    shapes = [(256, 512)] if a.small else [(4096, 11008), (8192, 11008), (4096, 4096)]
    widths = [(4, 128), (8, 32)]  # (bits, token group): intra_inter@2's gate/up, and @4's
    variants = [(32, 32, 4)] if a.small else [(128, 64, 4), (128, 64, 8), (64, 64, 4), (64, 32, 4), (32, 64, 4),
                                               (32, 32, 2), (128, 32, 4)]
    rows_out = []
    for r, c in shapes:
        for bits, g in widths:
            t = (torch.randn(r, c, generator=gen) * 0.5).to(dev, torch.bfloat16)
            xa = torch.randn(r, 16, generator=gen).to(dev)
            bw = (torch.randn(c, 16, generator=gen) * 0.02).to(dev)
            q = Q.quantize_triton(t, bits, g, False, "token_group")
            ref = two_kernels(q, xa, bw, 2.0)
            line = [f"{r}x{c} {bits}-bit t{g}"]
            if not a.small:
                from triton.testing import do_bench
                base = do_bench(lambda: two_kernels(q, xa, bw, 2.0), warmup=50, rep=300, return_mode="median")
                dec = do_bench(lambda: Q.dequantize_triton(q), warmup=50, rep=300, return_mode="median")
                line.append(f"two kernels {base * 1e3:6.1f} us (decode alone {dec * 1e3:5.1f})")
            for br, bwid, warps in variants:
                if br > g or g % br:
                    continue
                out = decode_lora(q, xa, bw, 2.0, br, bwid, warps)
                same = torch.equal(out.view(torch.int16), ref.view(torch.int16))
                cell = f"{br}x{bwid}w{warps}: {'same bits' if same else 'DIFFERENT'}"
                if not same:
                    diff = (out.float() - ref.float()).abs()
                    cell += f" (max diff {diff.max().item():.3g}, {int((diff > 0).sum())} differ)"
                if not a.small:
                    ms = do_bench(lambda br=br, bwid=bwid, warps=warps: decode_lora(q, xa, bw, 2.0, br, bwid, warps),
                                  warmup=50, rep=300, return_mode="median")
                    cell += f" {ms * 1e3:6.1f} us ({ms / base:.2f}x)"
                line.append(cell)
            rows_out.append(line)
            print("\n    ".join(line), flush=True)


if __name__ == "__main__":
    main()
