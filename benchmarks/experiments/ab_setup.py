"""The command line and model set-up the step A/B experiments share (``units_ab.py``, ``param_view_ab.py``,
``loop_time.py``): shapes, configurations, steps, device, and ``--tiny`` widths for a check on the dev CPU, then
``tools/bench_step.py``'s model and arguments for them."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tools.bench_step import build_model, build_parser  # noqa: E402

# bench_step's Llama at toy widths: 8 layers whose forward is all host work on a CPU
TINY_WIDTHS = ["--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "4", "--vocab", "128"]


def ab_parser(doc: str, shapes: str, configs: str, steps: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--shapes", default=shapes)
    p.add_argument("--configs", default=configs)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="toy widths (a check on the dev CPU)")
    p.add_argument("--lora-dropout", type=float, default=0.0, help="peft's lora_dropout (default 0)")
    return p


def ab_setup(a: argparse.Namespace) -> tuple[argparse.Namespace, list[tuple[int, int]], torch.device, torch.nn.Module]:
    """(bench_step's arguments, the shapes, the device, the model) for parsed ``ab_parser`` arguments."""
    args = build_parser().parse_args(["--device", a.device, "--lora-dropout", str(a.lora_dropout)]
                                     + (TINY_WIDTHS if a.tiny else []))
    args.shape_list = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    dev = torch.device(a.device)
    return args, args.shape_list, dev, build_model(args, dev)


def synchronizer(dev: torch.device):
    """A wait for ``dev``'s queued work (nothing to wait for on a CPU)."""
    return (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)


def device_work(fn, dev: torch.device):
    """``fn`` as a replay of a CUDA graph of one call on a GPU (its device time alone: timed call by call, a few small
    launches are as long as the host takes to issue them, and the host's speed drifts), ``fn`` itself elsewhere."""
    if dev.type != "cuda":
        return fn
    fn()  # compiled and its launcher cached outside the capture
    torch.cuda.synchronize(dev)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def median_ms(fn, reps: int, cuda: bool, warmup: int = 2) -> float:
    """``fn()``'s median time in ms over ``reps`` calls after ``warmup``: CUDA events around each call on a GPU (the
    device's time for what it queued), the host's wall time on a CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def layer_linears(hidden: int, intermediate: int) -> dict:
    """A Llama layer's LoRA linears by (in, out) width, with how many of each: q, k, v, o; gate, up; down."""
    return {(hidden, hidden): 4, (hidden, intermediate): 2, (intermediate, hidden): 1}


def timed_step(model: torch.nn.Module, batch: dict, preset: str, bits: int | None, sync) -> tuple:
    """One step under ``compress(preset)``: (the forward's host seconds, the ``with`` block's wall time after a
    sync; the step's wall seconds, synchronised; the context). Gradients are left for the caller to read or zero."""
    import hyclora_hooks as hy

    sync()
    t0 = time.perf_counter()
    with hy.compress(preset, model=model, **({"bits": bits} if bits else {})) as ctx:
        loss = model(**batch).loss
    host = time.perf_counter() - t0
    loss.backward()
    sync()
    return host, time.perf_counter() - t0, ctx


def ab_cases(a: argparse.Namespace, args: argparse.Namespace, shapes: list, dev: torch.device):
    """(shape, batch, configuration name, preset, bits) for every shape and ``--configs`` entry (``preset@bits``),
    with the replay's plans forgotten before each, so every case records its own."""
    import hyclora_hooks as hy
    from tools.bench_step import make_batch

    for b, s in shapes:
        batch = make_batch(args.vocab, b, s, dev, 0)
        for spec in a.configs.split(","):
            preset, _, bits = spec.partition("@")
            hy.replay.forget_plans()
            yield f"{b}x{s}", batch, spec, preset, int(bits) if bits else None


class KindStandIn:
    """Stands in for one of ``hyclora_hooks.units``' state functions (what ``units._kind_of`` gives): calls go to
    ``call``, while it compares and hashes as ``kind`` itself, so a replayed entry's ``kind in _CALL_KINDS`` holds
    (``kind is ...`` tests run only while recording: wrap after the plan is recorded)."""

    def __init__(self, kind, call):
        self.kind, self.call = kind, call

    def __call__(self, m):
        return self.call(m)

    def __eq__(self, other):
        return self.kind == getattr(other, "kind", other)

    def __hash__(self):
        return hash(self.kind)
