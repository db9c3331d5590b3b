"""The widening kernel (kernels/widen.py) against ATen, with a block / warps sweep, on the GPU (session 20).

For a bf16 cast to fp32 and ``mul``/``add`` of two bf16 tensors into fp32 at the shapes the backward rebuilds
(o_proj's input 8192 x 4096, down_proj's 8192 x 11008, the logits 8192 x 32000), checks the kernel's bits against
ATen's (``torch.equal``) and times both (``triton.testing.do_bench``, median ms) next to a same-size bf16 copy.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/widen_tiles.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from hyclora_hooks.kernels import widen  # noqa: E402
from tools.tables import print_rows  # noqa: E402

dev, bf16, fp32 = "cuda", torch.bfloat16, torch.float32
default = (widen._BLOCK, widen._WARPS)
VARIANTS = [(1024, 4), (2048, 4), (4096, 4), (4096, 8), (8192, 8)]
rows = []
for shape, ops in (((8192, 4096), ("cast", "add")), ((8192, 11008), ("mul",)), ((8192, 32000), ("cast",))):
    gen = torch.Generator(device=dev).manual_seed(shape[1])
    a = (torch.randn(shape, device=dev, generator=gen) * 3).to(bf16)
    b = (torch.randn(shape, device=dev, generator=gen) * 3).to(bf16)
    copy_ms = do_bench(lambda: a.clone(), return_mode="median")
    for op in ops:
        if op == "cast":
            aten, mine = (lambda: a.to(fp32)), (lambda: widen.cast(a))
        else:
            fn = getattr(torch, op)
            aten = (lambda fn=fn: fn(a, b, out=torch.empty(0, dtype=fp32, device=dev)))
            mine = (lambda op=op: widen.binary(op, a, b))
        row = {"case": f"{op} {shape[0]}x{shape[1]}", "bf16 copy ms": f"{copy_ms:.4f}",
               "ATen ms": f"{do_bench(aten, return_mode='median'):.4f}"}
        for block, warps in VARIANTS:
            widen._BLOCK, widen._WARPS = block, warps
            widen._launches.clear()
            same = torch.equal(mine(), aten())
            row[f"{block}/{warps}w"] = f"{do_bench(mine, return_mode='median'):.4f}{'' if same else ' !'}"
        widen._BLOCK, widen._WARPS = default
        widen._launches.clear()
        rows.append(row)
        print(row, flush=True)
print_rows(f"widening passes, ms ('!': other bits than ATen; library {default})", rows)
