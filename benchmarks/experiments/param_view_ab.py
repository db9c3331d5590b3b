"""Weight views through the parameter fast path, on and off, in one process (session 25).

A linear saves its weight as a view (``weight.t()``), a plain tensor: before session 25 those packs (a third of a
replayed Llama forward's) took the long way of ``Compressor._pack`` (device guard, tracker step-off, autocast
check, settle, replay checks); now ``_pack`` sends them to ``_replay_parameter`` as it does Parameters. The off arm
patches ``engine._param_view`` to answer False. One model, steps alternated one by one between the arms (both
replay the same plan), per configuration and shape: the forward's host time (the ``with`` block's wall time, the
GPU waited for before it) and the step's wall time (synchronised), medians, and whether every step replayed
every pack.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/param_view_ab.py [--shapes 4x1024,1x8192]

On the dev CPU: ``--device cpu --tiny --shapes 1x16``.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import engine  # noqa: E402
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="4x1024,1x8192")
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
    model = build_model(args, dev)
    fast = engine._param_view

    def step(batch, preset, bits):
        sync()
        t0 = time.perf_counter()
        with hy.compress(preset, model=model, **({"bits": bits} if bits else {})) as ctx:
            loss = model(**batch).loss
        host = time.perf_counter() - t0
        loss.backward()
        sync()
        wall = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        return host, wall, ctx.replayed_packs == ctx.report().packs

    print("| shape | config | fwd host off | fwd host on | on/off | step off | step on | on/off | all replayed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b, s in shapes:
        batch = make_batch(args.vocab, b, s, dev, 0)
        for spec in a.configs.split(","):
            preset, _, bits = spec.partition("@")
            bits = int(bits) if bits else None
            hy.replay.forget_plans()
            for _ in range(4):  # calibration, the recording step, a first replay
                step(batch, preset, bits)
            t = {True: ([], []), False: ([], [])}
            replayed = True
            for _ in range(a.steps):
                for on in (False, True):
                    engine._param_view = fast if on else (lambda t: False)
                    host, wall, ok = step(batch, preset, bits)
                    t[on][0].append(host * 1e3)
                    t[on][1].append(wall * 1e3)
                    replayed &= ok
            engine._param_view = fast
            h0, h1 = statistics.median(t[False][0]), statistics.median(t[True][0])
            w0, w1 = statistics.median(t[False][1]), statistics.median(t[True][1])
            print(f"| {b}x{s} | `{spec}` | {h0:.1f} | {h1:.1f} | {h1 / h0:.3f} | {w0:.1f} | {w1:.1f} | {w1 / w0:.3f} "
                  f"| {replayed} |", flush=True)


if __name__ == "__main__":
    main()
