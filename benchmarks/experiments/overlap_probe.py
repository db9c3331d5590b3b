"""Do the codec kernels overlap with the step's GEMMs and attention on another stream? (session 20, H200)

The codec passes are memory-bound (each within 1.2-2x of its bytes at copy rate) and the step around them is
GEMMs and flash attention (compute-bound), so a codec kernel on a side stream could hide behind them, if the GPU
runs both at once. This times, with CUDA events (median of 20 rounds after warm-up), each compute op alone, each
codec job alone (N launches of one codec kernel), and both launched together on two streams, and prints how
much of the codec job the overlap hid: ``hidden = (compute + codec - together) / codec``.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/overlap_probe.py
"""

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hyclora_hooks.kernels import lora_part, quant  # noqa: E402
from tools.tables import print_rows  # noqa: E402

dev, bf16 = "cuda", torch.bfloat16
torch.manual_seed(0)
T = 8192
x = torch.randn(T, 4096, device=dev, dtype=bf16)
w_up = torch.randn(11008, 4096, device=dev, dtype=bf16) * 0.02
w_down = torch.randn(4096, 11008, device=dev, dtype=bf16) * 0.02
h = torch.randn(T, 11008, device=dev, dtype=bf16)
q = torch.randn(1, 32, T, 128, device=dev, dtype=bf16)
k, v = torch.randn_like(q), torch.randn_like(q)
gate = torch.randn(T, 11008, device=dev, dtype=bf16) * 3
xa = torch.randn(T, 16, device=dev)
b = torch.randn(11008, 16, device=dev) * 0.05

COMPUTE = {
    "gemm up 8192x4096x11008": lambda: F.linear(x, w_up),
    "gemm down 8192x11008x4096": lambda: F.linear(h, w_down),
    "sdpa causal 8192": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
}
CODEC = {
    "quantize 4b t128 x2": lambda: [quant.quantize(gate, 4, 128, granularity="token_group") for _ in range(2)],
    "lora subtract x2": lambda: [lora_part.lora_combine(gate, xa, b, 2.0, bf16, True) for _ in range(2)],
    "copy 172 MiB x2": lambda: [gate.clone() for _ in range(2)],
}


def timed(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


side = torch.cuda.Stream()


def together(compute, codec):
    def run():
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            codec()
        compute()
        torch.cuda.current_stream().wait_stream(side)
    return run


def median_ms(fn, rounds: int = 20) -> float:
    for _ in range(3):
        timed(fn)
    return statistics.median(timed(fn) for _ in range(rounds))


rows = []
alone = {name: median_ms(fn) for name, fn in {**COMPUTE, **CODEC}.items()}
for cname, cfn in COMPUTE.items():
    for kname, kfn in CODEC.items():
        both = median_ms(together(cfn, kfn))
        hidden = (alone[cname] + alone[kname] - both) / alone[kname]
        rows.append({"compute": cname, "codec job": kname, "compute ms": f"{alone[cname]:.3f}",
                     "codec ms": f"{alone[kname]:.3f}", "together ms": f"{both:.3f}", "hidden": f"{hidden:.0%}"})
        print(rows[-1], flush=True)
print_rows(f"codec kernels on a side stream against compute ({torch.cuda.get_device_name()}, torch {torch.__version__})",
           rows)
