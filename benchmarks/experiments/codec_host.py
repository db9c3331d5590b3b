"""Host time of the quantize codec's encodes and decodes, call by call, at a step's own tensors (session 27).

Session 25 timed an `intra_inter@2` encode at ~135 us of host time on the H200 (57 a replayed forward at
4x1024) and session 26 a decode at ~74 us: far above the ~13 us of a direct Triton launch (NOTE [Direct launch]).
This captures every encode and decode one replayed step makes (their tensors, sites and payloads), then calls
each again in a loop under a collector (as ``compress()`` runs them) and prints, per kind of call, the median host
time of a call; then one cProfile pass over all of them, by own time and by cumulative time, to say where it goes.
The GPU is synchronised before each timed call, so nothing queued ahead slows the host.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/codec_host.py --shape 4x1024 [--reps 30]
"""

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks.codecs.quant import Quant  # noqa: E402
from ab_setup import TINY_WIDTHS, synchronizer  # noqa: E402
from hyclora_hooks.codecs.calibration import calibration_scope  # noqa: E402
from hyclora_hooks.kernels import nonfinite  # noqa: E402 - the library's module (kernels.nonfinite is another)
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402


ROOT: list = []  # the model: calibrated outlier channels are kept by it (calibration_scope's root)


def allocations(reps: int = 2000) -> None:
    """What an encode's buffers cost the host: three ``torch.empty`` (codes, scales, zeros) against one buffer
    viewed three ways, at a 4096 x 4096 token-group encode's sizes."""
    dev = torch.device("cuda")
    sizes = (4096 * 4096 // 2, 32 * 4096 * 2, 32 * 4096 * 2)

    def three():
        return [torch.empty(n, dtype=torch.uint8, device=dev) for n in sizes]

    def one():
        buf = torch.empty(sum(sizes), dtype=torch.uint8, device=dev)
        return [buf[:sizes[0]], buf[sizes[0]:sizes[0] + sizes[1]].view(torch.bfloat16),
                buf[sizes[0] + sizes[1]:].view(torch.bfloat16)]

    for name, fn in (("three torch.empty", three), ("one torch.empty + three views", one),
                     ("three torch.empty", three), ("one torch.empty + three views", one)):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        print(f"  {name:32s} {statistics.median(ts) * 1e6:6.1f} us")


def capture(model, batch, bits: int) -> tuple[list, list]:
    """(encodes, decodes) of one replayed step: (codec, tensor clone, site) and (codec, method, payload, args)."""
    encodes, decodes = [], []
    enc, methods = Quant.encode, {m: getattr(Quant, m) for m in ("decode", "decode_add", "decode_to")}

    def encode(self, t, site=None):
        out = enc(self, t, site)
        encodes.append((self, t.detach().clone(), site))
        return out

    def wrap(name):
        def call(self, payload, *a):
            decodes.append((self, name, payload, tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x
                                                       for x in a)))
            return methods[name](self, payload, *a)
        return call

    Quant.encode = encode
    for m in methods:
        setattr(Quant, m, wrap(m))
    try:
        with hy.compress("intra_inter", model=model, bits=bits):
            loss = model(**batch).loss
        loss.backward()
    finally:
        Quant.encode = enc
        for m, f in methods.items():
            setattr(Quant, m, f)
    model.zero_grad(set_to_none=True)
    return encodes, decodes


def kind(t: torch.Tensor, codec: Quant) -> str:
    return f"{codec.describe()} {tuple(t.shape)} {str(t.dtype)[6:]}{'' if t.is_contiguous() else ' strided'}"


def timed(calls: list, reps: int, sync) -> dict:
    """Host seconds of each call (synchronised before each), grouped by kind."""
    out = defaultdict(list)
    pending = nonfinite.PendingChecks(1 << 40)
    with nonfinite.collecting(pending.add), calibration_scope(lambda: ROOT[0]):
        for _ in range(reps):
            for label, fn in calls:
                sync()
                t0 = time.perf_counter()
                fn()
                out[label].append(time.perf_counter() - t0)
            sync()
            pending.settle(True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="4x1024")
    p.add_argument("--bits", type=int, default=2)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--cpu", action="store_true", help="a dry run of the script at toy widths on the CPU")
    a = p.parse_args()
    b, s = map(int, a.shape.split("x"))
    args = build_parser().parse_args(["--layers", "8"] + (TINY_WIDTHS if a.cpu else []))
    args.shape_list = [(b, s)]
    dev = torch.device("cpu" if a.cpu else "cuda")
    torch.manual_seed(0)
    model = build_model(args, dev)
    batch = make_batch(args.vocab, b, s, dev, 0)
    for _ in range(8):  # past calibration and the recorded step: the captured one replays
        with hy.compress("intra_inter", model=model, bits=a.bits):
            loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
    ROOT.append(model)
    encodes, decodes = capture(model, batch, a.bits)
    calls = [(f"encode {kind(t, c)}", lambda c=c, t=t, site=site: c.encode(t, site)) for c, t, site in encodes]
    calls += [(f"{name} {c.describe()} {tuple(pl.shape)} {str(pl.dtype)[6:]}",
               lambda c=c, n=name, pl=pl, x=x: getattr(c, n)(pl, *x))
              for c, name, pl, x in decodes]
    print(f"{len(encodes)} encodes, {len(decodes)} decodes a step ({a.shape}, intra_inter@{a.bits}); host us a call")
    sync = synchronizer(dev)
    per = timed(calls, a.reps, sync)
    total = 0.0
    print(f"{'calls':>5} {'median us':>9} {'min us':>7}  kind")
    for label, ts in sorted(per.items(), key=lambda kv: -statistics.median(kv[1]) * len(kv[1])):
        n = len(ts) // a.reps
        total += statistics.median(ts) * n
        print(f"{n:5d} {statistics.median(ts) * 1e6:9.1f} {min(ts) * 1e6:7.1f}  {label}")
    print(f"a step's calls, at their medians: {total * 1e3:.2f} ms")
    if dev.type == "cuda":
        print("an encode's buffers, host us a call:")
        allocations()
    prof = cProfile.Profile()
    pending = nonfinite.PendingChecks(1 << 40)
    with nonfinite.collecting(pending.add), calibration_scope(lambda: ROOT[0]):
        for _ in range(5):
            prof.enable()
            for _, fn in calls:
                fn()
            prof.disable()
            sync()
            pending.settle(True)
    for order in ("tottime", "cumulative"):
        print(f"\n--- cProfile, 5 passes over every call, by {order}")
        pstats.Stats(prof).sort_stats(order).print_stats(a.top)


if __name__ == "__main__":
    main()
