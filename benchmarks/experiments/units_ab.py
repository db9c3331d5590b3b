"""Replay units on and off in one process (session 24; NOTE [Replay units] in hyclora_hooks/units.py).

Two copies of bench_step's model: one records its plan with units, the other with units off (``units.ENABLED``
False while it records: no call is a unit), then both replay their plans, steps alternated one by one so the
host's drift falls on both alike. Per configuration and shape: the forward's host time (wall clock of the ``with``
block, the GPU waited for before it) and the step's wall time (forward and backward, synchronised), medians,
units off / on; and whether the two copies' LoRA gradients were equal bit for bit at every step.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/units_ab.py [--shapes 1x64,4x1024,1x8192]

``--attention`` (session 28): the off copy has every unit but Llama's attention (``units.ATTENTION`` False while it
records), so the table is attention units off / on; ``--composite`` likewise for decoder layers and MLPs
(``units.COMPOSITE``, rule 6).

On the dev CPU: ``--device cpu --tiny``.
"""

import copy
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks import units  # noqa: E402
from hyclora_hooks.models import lora_grads  # noqa: E402
from ab_setup import ab_cases, ab_parser, ab_setup, synchronizer, timed_step  # noqa: E402


def main() -> None:
    p = ab_parser(__doc__, "1x64,4x1024,1x8192", "baseline,intra_inter@2,intra_inter@4", 12)
    p.add_argument("--attention", action="store_true", help="off: every unit but the attention's")
    p.add_argument("--composite", action="store_true", help="off: every unit but decoder layers and MLPs")
    a = p.parse_args()
    switch = "ATTENTION" if a.attention else "COMPOSITE" if a.composite else "ENABLED"
    args, shapes, dev, on = ab_setup(a)
    sync = synchronizer(dev)
    off = copy.deepcopy(on)

    def step(model, batch, preset, bits):
        host, wall, ctx = timed_step(model, batch, preset, bits, sync)
        grads = lora_grads(model)
        model.zero_grad(set_to_none=True)
        return host, wall, grads, ctx

    rows = []
    for shape, batch, spec, preset, bits in ab_cases(a, args, shapes, dev):
        setattr(units, switch, False)  # the off copy records its plan without (attention) units
        for _ in range(2):
            step(off, batch, preset, bits)
        setattr(units, switch, True)
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
        rows.append((shape, spec, n_units, med[False][0], med[True][0], med[False][1], med[True][1], equal))
        print(rows[-1], flush=True)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    what = "attention units" if a.attention else "composite units" if a.composite else "units"
    print(f"\n{what} off / on | {name} | torch {torch.__version__} | {a.steps} steps each, alternated")
    print("| shape | config | units | fwd host off | fwd host on | on/off | step off | step on | on/off "
          "| grads equal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape, spec, n, h0, h1, w0, w1, eq in rows:
        print(f"| {shape} | {spec} | {n} | {h0:.1f} | {h1:.1f} | {h1 / h0:.3f} | {w0:.1f} | {w1:.1f} | {w1 / w0:.3f} "
              f"| {eq} |")


if __name__ == "__main__":
    main()
