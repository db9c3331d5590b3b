"""A replayed step's host time by part, forward and backward (session 25): perf_counter wrappers around the
engine's entry points, each counted at its outermost call only, over 15 steps of ``tools/bench_step.py``'s model
after warm-up.

Forward parts: ``compress()``'s construction (the model tree's walk), its enter and exit, the units' entry and exit
checks (NOTE [Replay units]), the op tracker's handler (inclusive: the op itself and the packs it makes), every pack,
the parameter fast path, the replayed packs' long way, and the quantize codec's encode. Backward parts: every
unpack, recipe evaluation (``lineage.evaluate``), the quantize codec's decodes, the SDPA replay, and the
accountant's release of a dead entry. Per part: the total a step's phase, calls, the median call and the slowest
(a call that ran one of Python's full collections can take hundreds of ms on the dev CPU: the total then says more
of the GC than of it). The wrappers add a frame each, so ``ModuleTracker._enter`` is left unwrapped
(``units._call_kwargs`` looks a fixed number of frames up). On a GPU a part's time is the host's: kernels are
queued, not waited for, unless the part itself waits.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/host_parts.py intra_inter@2 4x1024
    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 fine

``fine`` (session 35) adds the parts of a replayed pack's long way and of an encode (``FINE`` below); each wrapper
costs ~1 us a call, so read these as shares, not as the forward's time. ``units`` (session 39) adds the parts of a
unit's entry and exit (``UNIT_PARTS``): the state check (``unit state``: the state function ``_kind_of`` gives,
outermost call), the call's values, the comparison, rule 7's local hooks and lean bodies (``_bypass``), the exit.
    python benchmarks/experiments/host_parts.py baseline cpu      # 8 layers of width 64 at 1x16 on the dev CPU
"""
import functools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks import accounting, attention, engine, lineage, tracking, units  # noqa: E402
from hyclora_hooks.codecs import quant as codec_quant  # noqa: E402
from hyclora_hooks.kernels import nonfinite, quant as kquant  # noqa: E402
from ab_setup import TINY_WIDTHS, KindStandIn  # noqa: E402
from tools.bench_step import Bench, all_configs, build_model, build_parser, make_batch, warmup_for  # noqa: E402



FINE = [  # (owner, attribute, label): the long way's and an encode's parts
    (engine.Compressor, "_next_record", "_next_record"), (engine.Compressor, "_key", "_key"),
    (engine.Compressor, "_remember", "_remember"), (engine.Compressor, "_source", "_source"),
    (engine.Compressor, "_admit", "_admit"), (engine, "codec_view", "codec_view"),
    (engine.Compressor, "_bound", "_bound"), (engine.Compressor, "_recipe_entry", "_recipe_entry"),
    (engine.Compressor, "_account_recipe", "_account_recipe"), (accounting.Accountant, "admit", "Accountant.admit"),
    (nonfinite.PendingChecks, "settle", "PendingChecks.settle"), (lineage, "lora_subtract", "lora_subtract"),
    (codec_quant, "outlier_channels", "outlier_channels"), (codec_quant, "quantize", "quantize"),
    (nonfinite.Nonfinite, "find", "Nonfinite.find"), (tracking.OpTracker, "outside", "OpTracker.outside"),
    (lineage, "outside_autocast", "outside_autocast"), (engine, "_on_device", "_on_device"),
    (kquant, "quantize_triton", "quantize_triton"), (kquant, "_quantize_words", "_quantize_words"),
    (kquant, "_launch_quant_tokens", "_launch_quant_tokens"), (kquant, "_word_quant_plan", "_word_quant_plan"),
    (kquant, "_cached_plan", "_cached_plan"), (kquant, "_outlier_table", "_outlier_table"),
    (kquant, "host_flag", "host_flag"), (kquant, "_as_words", "_as_words"), (kquant, "launch", "launch"),
    (nonfinite, "_record", "event record"),
    (nonfinite.Nonfinite, "ready", "Nonfinite.ready"), (nonfinite.Nonfinite, "settle", "Nonfinite.settle")]


UNIT_PARTS = [(units, "_call_values", "_call_values"), (units, "_same", "_same"),
              (units.Units, "_bypass", "Units._bypass"), (units.Units, "_unit_exit", "Units._unit_exit"),
              (units.Units, "close", "Units.close"), (tracking.ModuleTracker, "pause", "ModuleTracker.pause"),
              (tracking.ModuleTracker, "unpause", "ModuleTracker.unpause")]


def main() -> None:
    name, shape = sys.argv[1], sys.argv[2]
    fine = sys.argv[3:] == ["fine"]
    unit_parts = sys.argv[3:] == ["units"]
    cpu = shape == "cpu"
    args = build_parser().parse_args(["--layers", "8"] + (["--device", "cpu"] + TINY_WIDTHS if cpu else []))
    b, s = (1, 16) if cpu else map(int, shape.split("x"))
    args.shape_list = [(b, s)]
    dev = torch.device("cpu" if cpu else "cuda")
    if cpu:
        torch.set_num_threads(1)
    bench = Bench(build_model(args, dev), dev)
    bench.batch = make_batch(args.vocab, b, s, dev, 0)
    cfg = {c.name: c for c in all_configs()}[name]
    totals: dict[tuple, list] = {}  # (phase, label) -> each outermost call's seconds
    inside: set[str] = set()
    phase = ["forward"]

    def wrap(owner, attr: str, label: str) -> None:
        orig = getattr(owner, attr)

        @functools.wraps(orig)
        def timed(*a, **k):
            if label in inside:
                return orig(*a, **k)
            inside.add(label)
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                inside.discard(label)
                totals.setdefault((phase[0], label), []).append(time.perf_counter() - t0)
        setattr(owner, attr, timed)

    for owner, attr, label in [
            (engine.Compressor, "__init__", "compress() construction"), (engine.Compressor, "__enter__", "enter"),
            (engine.Compressor, "__exit__", "exit"), (units.Units, "enter", "Units.enter"),
            (units.Units, "leave", "Units.leave"), (tracking.OpTracker, "__torch_function__", "op tracker (incl.)"),
            (engine.Compressor, "_pack", "every pack"), (engine.Compressor, "_replay_parameter", "parameter path"),
            (engine.Compressor, "_replay_record", "a replayed record's actions"),
            (codec_quant.Quant, "encode", "Quant.encode"), (engine, "_unpack", "every unpack"),
            (lineage, "evaluate", "recipe evaluation"), (codec_quant.Quant, "decode", "Quant.decode"),
            (codec_quant.Quant, "decode_to", "Quant.decode_to"), (codec_quant.Quant, "decode_add", "Quant.decode_add"),
            (attention.SdpaRecompute, "get", "SDPA replay"), (accounting.Accountant, "release", "accountant release")
    ] + (FINE if fine else []) + (UNIT_PARTS if unit_parts else []):
        wrap(owner, attr, label)
    n = 15
    for _ in range(warmup_for(cfg, None) + 2):
        loss, _ = bench.forward(cfg)
        loss.backward()
        bench.model.zero_grad(set_to_none=True)
    if unit_parts:  # after the plan is recorded: the record step tests state functions by identity
        kind_of = units._kind_of

        class _State:  # a namespace for wrap()
            pass

        def timed_kind_of(m):
            kind = kind_of(m)
            if kind is None or phase[0] != "forward" or "unit state" in inside:  # (the states below it: as is)
                return kind
            holder = _State()
            holder.fn = kind
            wrap(holder, "fn", "unit state")
            return KindStandIn(kind, holder.fn)
        units._kind_of = timed_kind_of
    bench.sync()
    totals.clear()
    took: dict[str, list] = {"forward": [], "backward": []}
    for _ in range(n):
        bench.sync()
        phase[0] = "forward"
        t0 = time.perf_counter()
        loss, _ = bench.forward(cfg)
        t1 = time.perf_counter()
        phase[0] = "backward"
        loss.backward()
        t2 = time.perf_counter()
        took["forward"].append(t1 - t0)
        took["backward"].append(t2 - t1)
        bench.model.zero_grad(set_to_none=True)
    bench.sync()
    for name_ in ("forward", "backward"):
        print(f"{name} {shape}: {name_} host median {statistics.median(took[name_]) * 1e3:.2f} ms")
        print(f"  {'part':26s} {'ms a ' + name_:>13s} {'calls':>6s} {'median us':>9s} {'max ms':>7s}")
        for (ph, label), times in totals.items():
            if ph == name_:
                print(f"  {label:26s} {sum(times) / n * 1e3:13.3f} {len(times) / n:6.1f} "
                      f"{statistics.median(times) * 1e6:9.1f} {max(times) * 1e3:7.2f}")


if __name__ == "__main__":
    main()
