"""Hugging Face's KV cache in a compressed training step, on and off, in one process (session 29;
``hyclora_hooks/kv_cache.py``).

Two copies of bench_step's model with HF's default config (``use_cache`` on): one is called with
``use_cache=True`` (the call keeps its cache: what every step of a default-config model did before session 29),
the other without (the context turns the cache off). Steps alternate between the copies. Per configuration and
shape: the allocator's growth over the forward with only the loss held (activation memory, as the separate script
measures it), the accountant's stored bytes, the forward's host time and the step's wall time (medians), the units
a replayed step took, and whether the two copies' LoRA gradients were equal bit for bit (only where nothing is
lossy: with the cache SDPA's value and key are stored another way, so compressed steps differ in their errors).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/kv_cache_ab.py [--shapes 4x1024,1x8192]

On the dev CPU: ``--device cpu --tiny`` (no allocator there: the memory column reads 0).
"""

import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks.models import lora_grads  # noqa: E402
from ab_setup import ab_cases, ab_parser, ab_setup, synchronizer  # noqa: E402


def main() -> None:
    a = ab_parser(__doc__, "4x1024,1x8192", "plain,intra_inter@2,intra_inter@4", 10).parse_args()
    args, shapes, dev, default = ab_setup(a)
    default.config.use_cache = True  # bench_step builds it off; HF's default is on
    cached = copy.deepcopy(default)
    sync = synchronizer(dev)
    allocated = torch.cuda.memory_allocated if dev.type == "cuda" else (lambda: 0)

    def step(model, batch, preset, bits):
        sync()
        t0 = time.perf_counter()
        before = allocated()
        ctx = hy.compress(preset, model=model, **({"bits": bits} if bits else {})) if preset != "plain" else None
        with ctx if ctx is not None else torch.enable_grad():
            loss = model(**batch).loss
        host = time.perf_counter() - t0
        act = allocated() - before
        loss.backward()
        sync()
        wall = time.perf_counter() - t0
        grads = lora_grads(model)
        model.zero_grad(set_to_none=True)
        stored = ctx.report().stored_bytes if ctx is not None else 0
        return act, stored, host, wall, grads, (ctx.replayed_units if ctx is not None else 0)

    rows = []
    for shape, batch, spec, preset, bits in ab_cases(a, args, shapes, dev):
        asks = dict(batch, use_cache=True)
        for _ in range(6):  # past calibration and the recording step
            step(cached, asks, preset, bits)
            step(default, batch, preset, bits)
        got = {"cache": [], "off": []}
        equal = True
        for _ in range(a.steps):
            c = step(cached, asks, preset, bits)
            d = step(default, batch, preset, bits)
            got["cache"].append(c)
            got["off"].append(d)
            equal &= torch.equal(c[4], d[4])
        med = {k: [statistics.median(r[i] for r in v) for i in (0, 1, 2, 3)] + [v[-1][5]] for k, v in got.items()}
        rows.append((shape, spec, med, equal))
        print(shape, spec, "done", flush=True)

    print(f"\nHF's KV cache asked for by the call / off (the context's default); {a.steps} steps alternated")
    print(f"{'shape':7} {'config':15} {'act MiB cache/off':>20} {'stored MiB cache/off':>22} "
          f"{'fwd host ms cache/off':>22} {'step ms cache/off':>18} {'units':>7} grads equal")
    for shape, spec, m, equal in rows:
        c, o = m["cache"], m["off"]
        mib = 2 ** 20
        print(f"{shape:7} {spec:15} {c[0] / mib:9.1f}/{o[0] / mib:<9.1f} {c[1] / mib:10.1f}/{o[1] / mib:<10.1f} "
              f"{c[2] * 1e3:10.1f}/{o[2] * 1e3:<10.1f} {c[3] * 1e3:8.1f}/{o[3] * 1e3:<8.1f} {c[4]:3}/{o[4]:<3} {equal}")


if __name__ == "__main__":
    main()
