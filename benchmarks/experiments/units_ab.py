"""Replay units on and off in one process (session 24; NOTE [Replay units] in hyclora_hooks/units.py).

Two copies of bench_step's model: one records its plan with units, the other with units off (``units.ENABLED``
False while it records: no call is a unit), then both replay their plans, steps alternated one by one so the
host's drift falls on both alike. Per configuration and shape: the forward's host time (wall clock of the ``with``
block, the GPU waited for before it) and the step's wall time (forward and backward, synchronised), medians,
units off / on; and whether the two copies' LoRA gradients were equal bit for bit at every step.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/units_ab.py [--shapes 1x64,4x1024,1x8192]

On the dev CPU: ``--device cpu --tiny``.
"""

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import units  # noqa: E402
from hyclora_hooks.models import lora_grads  # noqa: E402
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="1x64,4x1024,1x8192")
    p.add_argument("--configs", default="baseline,intra_inter@2,intra_inter@4")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true")
    a = p.parse_args()
    widths = ["--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "4", "--vocab", "128"]
    args = build_parser().parse_args(["--device", a.device] + (widths if a.tiny else []))
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    args.shape_list = shapes
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    on = build_model(args, dev)
    off = copy.deepcopy(on)

    def step(model, batch, preset, bits):
        sync()
        t0 = time.perf_counter()
        with hy.compress(preset, model=model, **({"bits": bits} if bits else {})) as ctx:
            loss = model(**batch).loss
        host = time.perf_counter() - t0
        loss.backward()
        sync()
        wall = time.perf_counter() - t0
        grads = lora_grads(model)
        model.zero_grad(set_to_none=True)
        return host, wall, grads, ctx

    rows = []
    for b, s in shapes:
        batch = make_batch(args.vocab, b, s, dev, 0)
        for spec in a.configs.split(","):
            preset, _, bits = spec.partition("@")
            bits = int(bits) if bits else None
            hy.replay.forget_plans()
            units.ENABLED = False  # the off copy records its plan without units
            for _ in range(2):
                step(off, batch, preset, bits)
            units.ENABLED = True
            for _ in range(2):
                step(on, batch, preset, bits)
            t = {True: ([], []), False: ([], [])}
            equal, n_units = True, 0
            for _ in range(a.steps):
                got = {}
                for flag, model in ((False, off), (True, on)):
                    host, wall, grads, ctx = step(model, batch, preset, bits)
                    t[flag][0].append(host * 1e3)
                    t[flag][1].append(wall * 1e3)
                    got[flag] = grads
                    if flag:
                        n_units = ctx.replayed_units
                equal &= torch.equal(got[True], got[False])
            med = {f: (statistics.median(t[f][0]), statistics.median(t[f][1])) for f in t}
            rows.append((f"{b}x{s}", spec, n_units, med[False][0], med[True][0], med[False][1], med[True][1], equal))
            print(rows[-1], flush=True)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"\nunits off / on | {name} | torch {torch.__version__} | {a.steps} steps each, alternated")
    print("| shape | config | units | fwd host off | fwd host on | on/off | step off | step on | on/off "
          "| grads equal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape, spec, n, h0, h1, w0, w1, eq in rows:
        print(f"| {shape} | {spec} | {n} | {h0:.1f} | {h1:.1f} | {h1 / h0:.3f} | {w0:.1f} | {w1:.1f} | {w1 / w0:.3f} "
              f"| {eq} |")


if __name__ == "__main__":
    main()
