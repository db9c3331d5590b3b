"""Where a replayed step's time beyond its GPU work comes from (session 33): variants of one configuration, steps
alternated one by one in one process, timed as ``tools/bench_step.py`` times a step (CUDA events from a synchronised
start, around forward and backward: host work before the first kernel counts).

Variants, each taking away one suspect:

* ``as is``: ``compress()`` built inside the timed step, as bench_step does;
* ``prebuilt``: the context object built before the step's start (its construction, the model tree's walk, off
  the clock);
* ``no exit wait``: the exit settles only the non-finite records whose events have completed (it waits for all of
  them as shipped: NOTE [Deferred non-finite check] rule 3), so the host does not wait for the forward's last
  encodes before the backward starts;
* ``no cap``: no cap on the sources pending records hold (``engine.MAX_PENDING_BYTES``; as shipped the host waits
  for the oldest record while more than 256 MiB of sources wait);
* ``all three``;
* ``cap 512 MiB``, ``cap 1 GiB``: the cap raised, not lifted;
* ``hooked bodies``: a replayed unit's body keeps the global module hooks (``units.BYPASS`` off: NOTE [Replay
  units] rule 7, added in session 33 after this script's first runs);
* ``first pack``: the step chooses to replay at its first pack, not at its first call of a unit's kind
  (``units.START_AT_UNITS`` off: rule 8, session 33).

``--variants`` picks some (comma list). Per variant: the medians of step, forward and backward (events), of the
forward's host time and of the step's peak allocated bytes over those at the step's start; the step's ratio to
plain's. The two non-shipped settle variants change only when the host waits, never what is computed.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/step_exposure.py --shapes 1x8192 \\
        --configs intra_inter@2
"""

import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import engine, units  # noqa: E402
from ab_setup import ab_cases, ab_parser, ab_setup, synchronizer  # noqa: E402

CAP = engine.MAX_PENDING_BYTES
VARIANTS = {  # name -> (prebuilt, exit waits, pending cap, bodies without global hooks, replay chosen at units)
    "as is": (False, True, CAP, True, True),
    "prebuilt": (True, True, CAP, True, True),
    "no exit wait": (False, False, CAP, True, True),
    "no cap": (False, True, 1 << 50, True, True),
    "all three": (True, False, 1 << 50, True, True),
    "cap 512 MiB": (False, True, 512 << 20, True, True),
    "cap 1 GiB": (False, True, 1 << 30, True, True),
    "hooked bodies": (False, True, CAP, False, True),
    "first pack": (False, True, CAP, True, False),
    "neither": (False, True, CAP, False, False),
}
_SETTLE = engine.Compressor._settle


def _settle_no_wait(self, block: bool = False) -> None:
    _SETTLE(self, False)


def main() -> None:
    p = ab_parser(__doc__, "1x8192", "intra_inter@2", 12)
    p.add_argument("--variants", default="as is,prebuilt,no exit wait,no cap,all three")
    a = p.parse_args()
    args, shapes, dev, model = ab_setup(a)
    sync = synchronizer(dev)
    cuda = dev.type == "cuda"

    def step(preset, bits, variant):
        prebuilt, waits, cap, bypass, early = VARIANTS["as is"] if preset is None else VARIANTS[variant]
        engine.Compressor._settle = _SETTLE if waits else _settle_no_wait
        engine.MAX_PENDING_BYTES, units.BYPASS, units.START_AT_UNITS = cap, bypass, early
        make = (lambda: hy.compress(preset, model=model, **({"bits": bits} if bits else {}))) if preset \
            else nullcontext
        model.zero_grad(set_to_none=True)
        ctx = make() if prebuilt else None
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
            start = torch.cuda.memory_allocated(dev)
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else []
        t0 = time.perf_counter()
        if cuda:
            ev[0].record()
        with (ctx if ctx is not None else make()):
            loss = model(**batch).loss
        host = time.perf_counter() - t0
        if cuda:
            ev[1].record()
        loss.backward()
        if cuda:
            ev[2].record()
        sync()
        wall = time.perf_counter() - t0
        engine.Compressor._settle, engine.MAX_PENDING_BYTES = _SETTLE, CAP
        units.BYPASS = units.START_AT_UNITS = True
        if cuda:
            peak = (torch.cuda.max_memory_allocated(dev) - start) / 2**30
            return (ev[0].elapsed_time(ev[2]), ev[0].elapsed_time(ev[1]), ev[1].elapsed_time(ev[2]), host * 1e3, peak)
        return (wall * 1e3, host * 1e3, (wall - host) * 1e3, host * 1e3, 0.0)

    rows = []
    for shape, batch, spec, preset, bits in ab_cases(a, args, shapes, dev):
        names = ["plain"] + a.variants.split(",")
        for _ in range(3):  # warm-up: calibration and the recording step
            for name in names:
                step(None if name == "plain" else preset, bits, name)
        got = {name: [] for name in names}
        for _ in range(a.steps):
            for name in names:
                got[name].append(step(None if name == "plain" else preset, bits, name))
        med = {name: [statistics.median(x[i] for x in got[name]) for i in range(5)] for name in names}
        for name in names:
            rows.append((shape, spec, name, *med[name], med[name][0] / med["plain"][0]))
            print(rows[-1], flush=True)
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"\n{gpu} | torch {torch.__version__} | {a.steps} steps each, variants alternated step by step; medians, ms")
    print("| shape | config | variant | step | forward | backward | forward host | peak GiB | step / plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape, spec, name, s, f, b, h, pk, r in rows:
        print(f"| {shape} | {spec} | {name} | {s:.1f} | {f:.1f} | {b:.1f} | {h:.1f} | {pk:.2f} | {r:.3f} |")


if __name__ == "__main__":
    main()
