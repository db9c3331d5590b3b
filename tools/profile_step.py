"""Profile one configuration of tools/bench_step.py: where a step's time goes, and what each pack/unpack costs.

Same model and flags as bench_step (``--config`` names one configuration, ``--shape`` one BATCHxSEQ). After
warm-up it prints, in order:

1. pack/unpack host time over ``--steps`` unprofiled steps: calls, total, microseconds per call, and the share
   of the step's wall time (the engine's ``Compressor._pack`` and ``engine._unpack`` wrapped with a timer; on
   CUDA this is launch work on the host, the kernels run asynchronously);
2. the hyclora_hooks Python functions by cumulative host time, then all functions by own time, from cProfile
   over one step (``--cprofile 0`` to skip; cProfile inflates Python time, so read it as shares, not as
   absolute costs);
3. with ``--by-recipe``, the backward's decodes by kind (codec, saved tensor's op class and role, a recipe's top
   op): calls and exclusive time a step (CUDA events around each decode, nested decodes subtracted; the
   backward is device-bound at these shapes, so event time is device time; on CPU, host time), against the
   backward's whole time;
4. the top ``--top`` ops by self device time (self CPU time on CPU, or with ``--sort cpu``) from torch.profiler
   over ``--steps`` steps; the ``hyclora::pack`` / ``hyclora::unpack`` rows are the wrapped hooks (``--trace
   DIR`` also writes a Chrome trace).

    PYTHONPATH=. python tools/profile_step.py --config intra@4 --layers 2 --shape 4x1024
    PYTHONPATH=. python tools/profile_step.py --device cpu --config intra@2 --layers 1 --shape 1x64 \\
        --hidden 256 --intermediate 512 --heads 4 --kv-heads 4 --vocab 512
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import io
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

from tools.bench_step import Bench, all_configs, build_model, build_parser as bench_parser, make_batch  # noqa: E402
from tools.bench_step import parse_shapes, resolve_device, set_checkpointing, warmup_for  # noqa: E402


class HookTimer:
    """Wraps the engine's pack and unpack with a host timer and a profiler range (undone by :meth:`restore`).

    ``Compressor.__init__`` looks up ``self._pack`` and ``__enter__`` the module-level ``_unpack``, so
    patching the class attribute and the module global reaches every context entered afterwards."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, label: str, fn: Callable) -> Callable:
        calls, seconds = self.calls, self.seconds

        def timed(*a: Any) -> Any:
            t0 = time.perf_counter()
            with torch.profiler.record_function(f"hyclora::{label}"):
                out = fn(*a)
            seconds[label] += time.perf_counter() - t0
            calls[label] += 1
            return out

        return timed

    def install(self) -> HookTimer:
        from hyclora_hooks import engine

        for owner, attr, label in ((engine.Compressor, "_pack", "pack"), (engine, "_unpack", "unpack")):
            orig = getattr(owner, attr, None)
            if orig is None:
                print(f"profile_step: hyclora_hooks.engine has no {attr}; {label} not timed", file=sys.stderr)
                continue
            setattr(owner, attr, self._wrap(label, orig))
            self._undo.append(lambda o=owner, a=attr, f=orig: setattr(o, a, f))
        return self

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        self.calls.clear()
        self.seconds.clear()


def decode_label(entry: Any) -> str:
    """``quant:attention.query`` for a stored entry; ``recompute:attention.query:lora_rebuild`` for a recipe."""
    site = entry.site
    label = f"{entry.codec.name}:{site.op_class}.{site.role}"
    name = getattr(entry.payload, "name", None) if entry.codec.name == "recompute" else None
    return f"{label}:{name}" if name else label


class RecipeTimer:
    """Times every ``Entry.decode`` in a backward by :func:`decode_label`, exclusive of the decodes nested in it
    (a recipe decodes its leaves). CUDA events on CUDA (elapsed device time between a decode's launches, which is
    its device time while the device is busy), host time on CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.records: list[tuple[str, Any, Any, int]] = []  # label, start, end, parent index (-1: none)
        self._open: list[int] = []
        self._undo: Callable[[], None] | None = None

    def _mark(self) -> Any:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def install(self) -> RecipeTimer:
        def timed(entry: Any, decode: Callable) -> Any:
            i = len(self.records)
            self.records.append((decode_label(entry), self._mark(), None, self._open[-1] if self._open else -1))
            self._open.append(i)
            try:
                return decode(entry)
            finally:
                self._open.pop()
                label, start, _, parent = self.records[i]
                self.records[i] = (label, start, self._mark(), parent)

        self._undo = around_backward_decodes(timed)
        return self

    def restore(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    def summary(self) -> dict[str, tuple[int, float]]:
        """label -> (calls, exclusive seconds), over every decode recorded."""
        if self.cuda:
            torch.cuda.synchronize()
        spans = [s.elapsed_time(e) / 1e3 if self.cuda else e - s for _, s, e, _ in self.records]
        own = list(spans)
        for i, (_, _, _, parent) in enumerate(self.records):
            if parent >= 0:
                own[parent] -= spans[i]
        out: dict[str, tuple[int, float]] = {}
        for (label, *_), sec in zip(self.records, own):
            n, total = out.get(label, (0, 0.0))
            out[label] = (n + 1, total + sec)
        return out


def around_backward_decodes(around: Callable[[Any, Callable], Any]) -> Callable[[], None]:
    """Run each backward ``Entry.decode`` as ``around(entry, decode)`` (a forward's decodes, the LoRA parts reading
    x·A, as they are); returns the undo."""
    from hyclora_hooks import engine

    orig = engine.Entry.decode

    def decode(entry: Any) -> Any:
        return orig(entry) if engine._graph_task_id() == -1 else around(entry, orig)

    engine.Entry.decode = decode
    return lambda: setattr(engine.Entry, "decode", orig)


def _in_range(entry: Any, decode: Callable) -> Any:
    """A decode inside a profiler range ``decode::<label>`` (:func:`decode_label`), so that
    :func:`print_recipe_kernels` can charge each kernel to the decode that launched it."""
    with torch.profiler.record_function(f"decode::{decode_label(entry)}"):
        return decode(entry)


def _cpu_work(prof: Any) -> Iterator[tuple[str, str, float]]:
    """(decode label, op, host us): each op's own host time, charged to the innermost ``decode::`` range."""
    for ev in prof.events():
        if ev.name.startswith("decode::"):
            continue
        up = ev.cpu_parent
        while up is not None and not up.name.startswith("decode::"):
            up = up.cpu_parent
        if up is not None:
            yield up.name[len("decode::"):], ev.name, ev.self_cpu_time_total


_RANGES = ("decode::", "bench::", "hyclora::")  # our profiler ranges (the GPU timeline shows them too)


def kernels_in_ranges(prof: Any, prefix: str = "decode::") -> Iterator[tuple[str, str, float]]:
    """(range label, kernel, device us): each kernel charged to the innermost ``prefix`` range open on the host
    when it was launched. By launch time rather than by the op tree, because a Triton kernel is launched outside
    any aten op and the profiler hangs it on no range. Approximate: ranges are timed by the profiler's clock and
    launches by CUPTI's, so kernels launched near a range's ends can land in a neighbour (session 18 saw it).
    (Threads are not matched: the profiler numbers a range's thread its own way and a launch's by the OS; while a
    backward decodes, only its thread launches.)"""
    raw = prof.profiler.kineto_results.events()
    ranges = sorted((e.start_ns(), e.end_ns(), e.name()[len(prefix):]) for e in raw if e.name().startswith(prefix))
    starts = [r[0] for r in ranges]
    cpu = torch.autograd.DeviceType.CPU
    launches = {e.correlation_id(): e.start_ns() for e in raw
                if e.device_type() == cpu and any(w in e.name() for w in ("LaunchKernel", "Memcpy", "Memset"))}
    gpu = [e for e in raw if e.device_type() != cpu and not e.name().startswith(_RANGES)]  # kernels, not ranges
    found = sum(e.correlation_id() in launches for e in gpu)
    if found < 0.9 * len(gpu):  # the profiler's ids changed meaning: say so rather than print a wrong table
        print(f"profile_step: only {found} of {len(gpu)} kernels matched a launch by correlation id",
              file=sys.stderr)
    for e in gpu:
        t = launches.get(e.correlation_id())  # CUPTI's id, shared by a launch and its kernel
        if t is None:
            continue
        i = bisect.bisect_right(starts, t) - 1
        while i >= 0 and ranges[i][1] < t and t - ranges[i][0] < 10**9:  # no decode lasts a second
            i -= 1
        if i >= 0 and ranges[i][0] <= t <= ranges[i][1]:
            yield ranges[i][2], e.name(), e.duration_ns() / 1e3


def print_recipe_kernels(prof: Any, top: int, steps: int, width: int, cuda: bool) -> None:
    """The kernels (on CPU, the ops' host time) each kind of backward decode launched, by device time."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))
    for label, name, us in (kernels_in_ranges(prof) if cuda else _cpu_work(prof)):
        cell = table[label][name]
        cell[0] += 1
        cell[1] += us / 1e3
    totals = sorted(((sum(v[1] for v in ks.values()), label) for label, ks in table.items()), reverse=True)
    what = "kernels (by launch time: approximate)" if cuda else "ops (host time)"
    print(f"\n{what} by backward decode kind, {top} a kind, per step over {steps} profiled step(s) (ms; nested "
          "decodes apart):")
    for total, label in totals:
        print(f"  {label}: {total / steps:.3f} ms/step")
        rows = sorted(table[label].items(), key=lambda kv: -kv[1][1])[:top]
        for name, (n, ms) in rows:
            print(f"      {ms / steps:8.3f} ms {n / steps:5.0f}x  {name[:width]}")


def _step(bench: Bench, cfg: Any) -> None:
    bench.model.zero_grad(set_to_none=True)
    with torch.profiler.record_function("bench::forward"):
        loss, _ = bench.forward(cfg)
    with torch.profiler.record_function("bench::backward"):
        loss.backward()
    bench.sync()


def build_parser() -> argparse.ArgumentParser:
    p = bench_parser()
    p.description = __doc__.split("\n\n")[0]
    for a in list(p._actions):  # bench_step's multi-config / multi-shape / output flags do not apply here
        if a.dest in ("configs", "shapes", "seq_len", "batch", "out", "steps", "budget_s"):
            p._remove_action(a)
            for opt in a.option_strings:
                p._option_string_actions.pop(opt, None)
    p.add_argument("--config", default="intra@4", help="one configuration of bench_step (default intra@4)")
    p.add_argument("--shape", default="4x1024", help="BATCHxSEQ (default 4x1024)")
    p.add_argument("--steps", type=int, default=3, help="steps timed, and steps profiled (default 3)")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--cprofile", type=int, default=1, help="steps under cProfile (default 1; 0 skips)")
    p.add_argument("--trace", help="folder for a Chrome trace of the profiled steps")
    p.add_argument("--by-shape", action="store_true",
                   help="one row per op and input shapes (which matmuls a configuration adds, say)")
    p.add_argument("--by-recipe", action="store_true",
                   help="the backward's decodes by kind (codec, op class and role, recipe op) with their time")
    p.add_argument("--recipe-kernels", type=int, default=0, metavar="N",
                   help="with the profiled steps, the N kernels taking most device time in each kind of backward "
                   "decode (exclusive of nested decodes; on CUDA charged by launch time, approximate; default 0: "
                   "off)")
    p.add_argument("--name-width", type=int, default=48, help="width of the op-name column (default 48)")
    p.add_argument("--sort", choices=("device", "cpu"), default="device",
                   help="order the op table by self device time (default; self CPU time on CPU) or by self CPU "
                   "time (host work: launches, allocations, copies)")
    p.set_defaults(layers=2)
    return p


def shape_bench(args: argparse.Namespace) -> Bench:
    """The model of :func:`build_parser`'s flags on ``--device``, with the batch of its one ``--shape``."""
    args.shape_list = parse_shapes(args.shape)
    (bsz, seq), = args.shape_list
    device = resolve_device(args.device)
    bench = Bench(build_model(args, device), device)
    bench.batch = make_batch(args.vocab, bsz, seq, device, args.seed)
    return bench


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    by_name = {c.name: c for c in all_configs()}
    if args.config not in by_name:
        raise SystemExit(f"profile_step: unknown --config {args.config!r}; choose from {sorted(by_name)}")
    cfg = by_name[args.config]
    import hyclora_hooks

    if cfg.preset is not None and cfg.preset not in hyclora_hooks.preset_names():
        raise SystemExit(f"profile_step: preset {cfg.preset!r} is not in this checkout "
                         f"(have {hyclora_hooks.preset_names()})")
    bench = shape_bench(args)
    device, cuda = bench.device, bench.cuda
    timer = HookTimer().install()
    set_checkpointing(bench.model, cfg.checkpoint, cfg.uncheckpointed)
    try:
        for _ in range(warmup_for(cfg, args.warmup)):
            _step(bench, cfg)

        # 1. hook host time over plain (unprofiled) steps
        timer.reset()
        times = bench.timed_steps(cfg, args.steps)
        wall = sum(times["wall"])
        step_ms = 1e3 * sorted(times["step"])[len(times["step"]) // 2]
        print(f"{args.config} at {args.shape}, {args.layers} layers on "
              f"{torch.cuda.get_device_name(device) if cuda else 'cpu'}: step {step_ms:.1f} ms (median of "
              f"{args.steps}), forward {1e3 * sorted(times['fwd'])[len(times['fwd']) // 2]:.1f} ms")
        for label in ("pack", "unpack"):
            n, s = timer.calls.get(label, 0), timer.seconds.get(label, 0.0)
            per = f"{1e6 * s / n:8.1f} us/call" if n else "       - us/call"
            print(f"  {label:<7}{n / args.steps:8.0f} calls/step {1e3 * s / args.steps:9.2f} ms/step {per} "
                  f"{100 * s / wall if wall else 0:6.1f}% of host wall")

        # 2. Python functions of the library under cProfile
        if args.cprofile > 0:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.cprofile):
                _step(bench, cfg)
            prof.disable()
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
            st.print_stats(r"hyclora_hooks|/kernels/", args.top)
            body = buf.getvalue()
            start = body.find("   ncalls")
            print(f"\nhyclora_hooks Python functions, cProfile over {args.cprofile} step(s), by cumulative time:")
            print(body[start:].rstrip() if start >= 0 else "  (none recorded)")
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.top)
            body = buf.getvalue()
            start = body.find("   ncalls")
            print("\nall Python functions by own time (tottime):")
            print(body[start:].rstrip() if start >= 0 else "  (none recorded)")

        # 3. the backward's decodes by kind
        if args.by_recipe:
            rtimer = RecipeTimer(cuda).install()
            try:
                times = bench.timed_steps(cfg, args.steps)
            finally:
                rtimer.restore()
            bwd_ms = 1e3 * sum(times["bwd"]) / args.steps
            rows = sorted(rtimer.summary().items(), key=lambda kv: -kv[1][1])
            total = sum(sec for _, (_, sec) in rows)
            print(f"\nbackward decodes by kind over {args.steps} step(s) (exclusive; nested decodes subtracted): "
                  f"{1e3 * total / args.steps:.2f} ms of a {bwd_ms:.2f} ms backward a step")
            for label, (n, sec) in rows:
                print(f"  {label:<60} {n / args.steps:6.0f} calls/step {1e3 * sec / args.steps:9.3f} ms/step")

        # 4. torch.profiler
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        undo = around_backward_decodes(_in_range) if args.recipe_kernels else None
        try:
            with torch.profiler.profile(activities=acts, record_shapes=args.by_shape) as prof_t:
                for _ in range(args.steps):
                    _step(bench, cfg)
        finally:
            if undo is not None:
                undo()
        if args.recipe_kernels:
            print_recipe_kernels(prof_t, args.recipe_kernels, args.steps, args.name_width, cuda)
        if args.trace:
            Path(args.trace).mkdir(parents=True, exist_ok=True)
            path = Path(args.trace) / f"trace-{args.config.replace('@', '-').replace('+', '-')}-{args.shape}.json"
            prof_t.export_chrome_trace(str(path))
            print(f"\nwrote {path}")
        sort = "self_cuda_time_total" if cuda and args.sort == "device" else "self_cpu_time_total"
        avg = prof_t.key_averages(group_by_input_shape=args.by_shape)
        print(f"\ntop {args.top} ops by {sort} over {args.steps} profiled step(s):")
        print(avg.table(sort_by=sort, row_limit=args.top, max_name_column_width=args.name_width,
                        max_shapes_column_width=120))
        rows = [e for e in avg if e.key.startswith("hyclora::")]
        if rows:
            print("hook ranges (host time includes the profiler's own overhead):")
            for e in rows:
                print(f"  {e.key:<18} calls {e.count:6d}  cpu total {e.cpu_time_total / 1e3:9.2f} ms  "
                      f"cpu/call {e.cpu_time_total / max(e.count, 1):8.1f} us")
    finally:
        set_checkpointing(bench.model, False)
        timer.restore()
    return 0


if __name__ == "__main__":
    sys.exit(main())
