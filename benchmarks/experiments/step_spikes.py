"""Per step of one configuration (session 14): forward host time, forward and backward event times, Python's
garbage collections by generation, and the CUDA caching allocator's device allocations, frees and retries, to
find what makes the rare slow step (the 1x8192 step maxima of sessions 12-13); and, for a compressed configuration, how
the step ended (NOTE [Replay]: recorded, replayed to the end, or a replay whose plan was dropped, with the checks
that dropped it: packs carried out against the plan's, ops against its signatures, a diverged signature).

    PYTHONPATH=. python benchmarks/experiments/step_spikes.py --shape 1x8192 --configs intra_inter@2,plain --steps 30
"""

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks import engine  # noqa: E402

from tools.bench_step import all_configs  # noqa: E402
from tools.profile_step import build_parser, shape_bench  # noqa: E402

p = build_parser()
p.add_argument("--configs", default="intra_inter@2,plain")
args = p.parse_args()
bench = shape_bench(args)
dev, cuda = bench.device, bench.cuda
cfgs = {c.name: c for c in all_configs()}
keys = ["num_device_alloc", "num_device_free", "num_alloc_retries"]
ends: list = []
_end_step = engine.Compressor._end_step


def end_step(self, clean: bool) -> None:
    """Note the replay checks of ``_end_step`` before it runs."""
    plan = getattr(self, "_replay_plan", None) if self._mode == "replay" else None
    ends.append(f"{self._mode} packs {self.replayed_packs}" + ("" if plan is None else
                f"/{len(plan.packs)} next {self._next} ops {self._trace.count}/{len(plan.sigs)} "
                f"diverged {self._trace.diverged} clean {clean}"))
    _end_step(self, clean)


engine.Compressor._end_step = end_step
gens = [0, 0, 0]
gc.callbacks.append(lambda phase, info: gens.__setitem__(info["generation"], gens[info["generation"]] + 1)
                    if phase == "stop" else None)


def stats() -> dict:
    return torch.cuda.memory_stats(dev) if cuda else {}


for name in args.configs.split(","):
    for i in range(args.steps):
        s0, g0 = stats(), list(gens)
        bench.sync()
        t0 = time.perf_counter()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else None
        if cuda:
            ev[0].record()
        loss, _ = bench.forward(cfgs[name])
        t1 = time.perf_counter()
        if cuda:
            ev[1].record()
        loss.backward()
        if cuda:
            ev[2].record()
        bench.sync()
        t2 = time.perf_counter()
        bench.model.zero_grad(set_to_none=True)
        del loss
        s1 = stats()
        end = ends.pop() if ends else ""
        ends.clear()
        fe, be = (ev[0].elapsed_time(ev[1]), ev[1].elapsed_time(ev[2])) if cuda else (0.0, 0.0)
        alloc = " ".join(f"{k[4:]}={s1.get(k, 0) - s0.get(k, 0)}" for k in keys)
        print(f"{name:16s} step {i:2d} fwd host {1e3 * (t1 - t0):7.1f} fwd ev {fe:7.1f} bwd ev {be:7.1f} "
              f"step {1e3 * (t2 - t0):7.1f} gc {[a - b for a, b in zip(gens, g0)]} {alloc} {end}", flush=True)
