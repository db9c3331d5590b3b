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

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from hyclora_hooks import engine  # noqa: E402
from ab_setup import ab_cases, ab_parser, ab_setup, synchronizer, timed_step  # noqa: E402


def main() -> None:
    a = ab_parser(__doc__, "4x1024,1x8192", "baseline,intra_inter@2,intra_inter@4", 12).parse_args()
    args, shapes, dev, model = ab_setup(a)
    sync = synchronizer(dev)
    fast = engine._param_view

    def step(batch, preset, bits):
        host, wall, ctx = timed_step(model, batch, preset, bits, sync)
        model.zero_grad(set_to_none=True)
        return host, wall, ctx.replayed_packs == ctx.report().packs

    print("| shape | config | fwd host off | fwd host on | on/off | step off | step on | on/off | all replayed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape, batch, spec, preset, bits in ab_cases(a, args, shapes, dev):
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
        print(f"| {shape} | `{spec}` | {h0:.1f} | {h1:.1f} | {h1 / h0:.3f} | {w0:.1f} | {w1:.1f} | {w1 / w0:.3f} "
              f"| {replayed} |", flush=True)


if __name__ == "__main__":
    main()
