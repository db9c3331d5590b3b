"""A replayed forward's host time in three phases (session 39): from the step's start to the first decoder layer's
call (the context's construction and entry, the embedding, the position checks, the rotary embedding, the first
unit's entry check), the decoder layers, and from the last layer's exit to the context's exit (the final norm, the
head and the fused loss, the exit's settling). At a step's start the GPU has nothing queued, so the first phase's
host time is GPU idle time whatever the configuration; plain's is the reference. ``tools/bench_step.py``'s model,
15 steps after warm-up, synchronised before each (as bench_step times a step).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/forward_phases.py plain,intra_inter@2,intra_inter@4
    python benchmarks/experiments/forward_phases.py plain,intra_inter@2 --cpu      # 8 toy layers at 1x16
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from ab_setup import TINY_WIDTHS  # noqa: E402
from tools.bench_step import Bench, all_configs, build_model, build_parser, make_batch, warmup_for  # noqa: E402


def main() -> None:
    names, cpu = sys.argv[1].split(","), "--cpu" in sys.argv[2:]
    args = build_parser().parse_args(["--layers", "8"] + (["--device", "cpu"] + TINY_WIDTHS if cpu else []))
    shape = (1, 16) if cpu else (4, 1024)
    args.shape_list = [shape]
    dev = torch.device("cpu" if cpu else "cuda")
    bench = Bench(build_model(args, dev), dev)
    bench.batch = make_batch(args.vocab, *shape, dev, 0)
    layers = [m for m in bench.model.modules() if type(m).__name__.endswith("DecoderLayer")]
    marks: dict = {}
    # a local pre-hook runs after the global ones: the first layer's mark comes after its unit's entry check
    layers[0].register_forward_pre_hook(lambda m, a: marks.__setitem__("first", time.perf_counter()))
    layers[-1].register_forward_hook(lambda m, a, o: marks.__setitem__("last", time.perf_counter()))
    configs = {c.name: c for c in all_configs()}
    print(f"{'config':16s} {'to layer 0':>10s} {'layers':>8s} {'after':>8s}   "
          f"host ms, medians of 15 forwards ({shape[0]}x{shape[1]})")
    for name in names:
        cfg = configs[name]
        for _ in range(warmup_for(cfg, None) + 2):
            loss, _ = bench.forward(cfg)
            loss.backward()
            bench.model.zero_grad(set_to_none=True)
        phases: list = [[], [], []]
        for _ in range(15):
            bench.sync()
            t0 = time.perf_counter()
            loss, _ = bench.forward(cfg)
            t1 = time.perf_counter()
            loss.backward()
            bench.model.zero_grad(set_to_none=True)
            for i, d in enumerate((marks["first"] - t0, marks["last"] - marks["first"], t1 - marks["last"])):
                phases[i].append(d * 1e3)
        print(f"{name:16s} " + " ".join(f"{statistics.median(p):{w}.3f}" for p, w in zip(phases, (10, 8, 8))),
              flush=True)


if __name__ == "__main__":
    main()
