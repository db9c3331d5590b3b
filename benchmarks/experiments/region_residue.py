"""Do checkpointed steps leave anything behind that slows the uncheckpointed steps after them (session 42)?

Session 42's first table after region sums (NOTE [Region sums]) read ``intra_inter@2`` at 4x1024 at 1.02x in
bench_step's first round and 1.27-1.50x in the later ones, after the checkpointed configurations had run, and the
separate script's ``intra_inter@2`` (with ``model=``) at 1.08x fastest where its ``no model=`` row read 0.95x. This
runs, in one process: uncheckpointed steps (plain, ``intra_inter@2`` with and without ``model=``, alternated), then
``--ckpt-steps`` steps of ``intra_inter@2`` with every decoder layer checkpointed, then the uncheckpointed steps
again; ``--no-region-sums`` runs it with ``region_sums.ENABLED`` off. Per phase and configuration: the medians of
the step (events) and of the forward's host time, and the allocator's device mallocs and frees a step.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/region_residue.py --shapes 4x1024 [--no-region-sums]
"""

import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import region_sums  # noqa: E402
from tools.bench_step import make_batch, set_checkpointing  # noqa: E402
from ab_setup import ab_parser, ab_setup, synchronizer  # noqa: E402


def main() -> None:
    p = ab_parser(__doc__, "4x1024", "intra_inter@2", 10)
    p.add_argument("--ckpt-steps", type=int, default=6)
    p.add_argument("--no-region-sums", action="store_true")
    a = p.parse_args()
    region_sums.ENABLED = not a.no_region_sums
    args, shapes, dev, model = ab_setup(a)
    sync = synchronizer(dev)
    cuda = dev.type == "cuda"
    b, s = shapes[0]
    batch = make_batch(args.vocab, b, s, dev, 0)
    contexts = {"plain": nullcontext, "intra_inter@2": lambda: hy.compress("intra_inter", model=model, bits=2),
                "intra_inter@2 no model=": lambda: hy.compress("intra_inter", bits=2)}

    def stats():
        m = torch.cuda.memory_stats(dev) if cuda else {}
        return m.get("num_device_alloc", 0), m.get("num_device_free", 0)

    def step(make):
        model.zero_grad(set_to_none=True)
        sync()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if cuda else []
        before = stats()
        t0 = time.perf_counter()
        if cuda:
            ev[0].record()
        with make():
            loss = model(**batch).loss
        host = time.perf_counter() - t0
        loss.backward()
        if cuda:
            ev[1].record()
        sync()
        ms = ev[0].elapsed_time(ev[1]) if cuda else (time.perf_counter() - t0) * 1e3
        after = stats()
        return ms, host * 1e3, after[0] - before[0], after[1] - before[1]

    rows = []

    def phase(name):
        for _ in range(3):
            for make in contexts.values():
                step(make)
        got = {k: [] for k in contexts}
        for _ in range(a.steps):
            for k, make in contexts.items():
                got[k].append(step(make))
        for k, xs in got.items():
            med = [statistics.median(x[i] for x in xs) for i in range(2)]
            mallocs, frees = sum(x[2] for x in xs) / len(xs), sum(x[3] for x in xs) / len(xs)
            rows.append((name, k, *med, mallocs, frees, [round(x[0]) for x in xs]))
            print(rows[-1], flush=True)

    phase("before")
    set_checkpointing(model, True)
    ck = [step(contexts["intra_inter@2"]) for _ in range(a.ckpt_steps)]
    set_checkpointing(model, False)
    print("checkpointed steps", [round(x[0]) for x in ck], flush=True)
    phase("after")
    plain = {r[0]: r[2] for r in rows if r[1] == "plain"}
    print(f"\nregion sums {'on' if region_sums.ENABLED else 'off'} | {b}x{s} | medians, ms")
    print("| phase | config | step | forward host | step / plain | device mallocs | frees | steps |")
    print("|---|---|---|---|---|---|---|---|")
    for name, k, ms, host, mallocs, frees, xs in rows:
        print(f"| {name} | {k} | {ms:.1f} | {host:.1f} | {ms / plain[name]:.3f} | {mallocs:.1f} | {frees:.1f} | {xs} |")


if __name__ == "__main__":
    main()
