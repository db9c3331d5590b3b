"""What a replay unit's entry check (``units.unit_state``) costs with the host's caches cold, against warm (session 36).

Session 34 timed a Llama decoder layer's state at ~50 us in a loop, while ``host_parts.py`` put a unit's entry at
~450 us on the H200 host and ~240 us on the dev CPU. The check touches a few thousand Python objects (every
module's hook dicts, parameters, peft's settings, the attention's functions and globals); inside a step the
model's ops run between two entries and leave those objects out of the caches. Here each call comes after a walk
over ~200k dicts that evicts them (cold), then again at once (warm); "batch" checks every layer in a row after one
eviction (what checking all units at a step's first entry would cost). CPU only: the model is bench_step's Llama at
toy widths (the state does not depend on the widths).

    python benchmarks/experiments/cold_state.py
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from ab_setup import TINY_WIDTHS  # noqa: E402
from hyclora_hooks import units  # noqa: E402
from tools.bench_step import build_model, build_parser  # noqa: E402

_JUNK = [{"a": i, "b": str(i)} for i in range(200_000)]


def evict() -> int:
    total = 0
    for d in _JUNK:
        total += d["a"]
    return total


def cold_warm(fn, objs: list, rounds: int = 20) -> tuple[float, float]:
    """Median microseconds of ``fn(o)`` right after an eviction, and called again at once."""
    cold, warm = [], []
    for _ in range(rounds):
        for o in objs:
            evict()
            t0 = time.perf_counter()
            fn(o)
            t1 = time.perf_counter()
            fn(o)
            t2 = time.perf_counter()
            cold.append(t1 - t0)
            warm.append(t2 - t1)
    return statistics.median(cold) * 1e6, statistics.median(warm) * 1e6


def main() -> None:
    args = build_parser().parse_args(["--layers", "8", "--device", "cpu"] + TINY_WIDTHS)
    args.shape_list = [(1, 16)]
    layers = build_model(args, torch.device("cpu")).base_model.model.model.layers
    rows = [("decoder layer (unit_state)", units.unit_state, list(layers)),
            ("attention (its 4 LoRA linears)", units._attention_state, [la.self_attn for la in layers]),
            ("MLP (its 3 LoRA linears)", units._composite_state, [la.mlp for la in layers]),
            ("one LoRA linear", units._lora_state, [la.self_attn.q_proj for la in layers]),
            ("one RMSNorm", units._norm_state, [la.input_layernorm for la in layers])]
    print(f"{'state of':32s} {'cold us':>8s} {'warm us':>8s}")
    for name, fn, objs in rows:
        c, w = cold_warm(fn, objs)
        print(f"{name:32s} {c:8.1f} {w:8.1f}")
    batch = [[] for _ in layers]
    for _ in range(20):
        evict()
        for i, layer in enumerate(layers):
            t0 = time.perf_counter()
            units.unit_state(layer)
            batch[i].append(time.perf_counter() - t0)
    print("batch: the 8 layers in a row after one eviction, us:",
          [round(statistics.median(b) * 1e6) for b in batch])


if __name__ == "__main__":
    main()
