"""Where a replayed step's host time goes, forward and backward, sampled by py-spy (session 38): ``tools/bench_step.py``'s
model runs steps of one configuration; after warm-up it prints ``READY <pid>`` and keeps stepping for ``--seconds``,
so that ``py-spy record --pid`` (native frames on) samples only replayed steps. Both threads count: the forward runs on
the main thread, a CUDA backward on autograd's device thread (cProfile, bound to one thread, misses the backward's
unpacks). ``--summarise FILE`` reads py-spy's raw output (collapsed stacks) and prints, per thread, the share of
samples whose stack holds each of a few markers (our pack and unpack paths, the SDPA replay, recipe evaluation,
kernel launches, the caching allocator) and the commonest leaf frames.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/spy_step.py intra_inter@2 --shapes 4x1024 &
    py-spy record --native --threads --rate 250 --duration 20 --format raw --output spy.txt --pid <pid from READY>
    python benchmarks/experiments/spy_step.py --summarise spy.txt [--by-function]
"""

import argparse
import os
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# marker -> substrings of a frame: a sample counts for the marker when any frame of its stack holds one
MARKERS = {
    "forward (the with block)": ("Bench.forward (",),
    "pack hook (ours)": ("Compressor._pack (",),
    "unpack hook (ours)": ("_unpack (hyclora_hooks/engine.py",),
    "recipe evaluation": ("evaluate (hyclora_hooks/lineage.py",),
    "SDPA replay": ("SdpaRecompute._compute (",),
    "decode": ("dequantize",),
    "encode": ("Quant.encode (",),
    "units enter": ("Units.enter (",),
    "op tracker": ("OpTracker.__torch_function__ (",),
    "triton launch (ours)": ("launch.py:",),
    "cudaLaunchKernel": ("cudaLaunchKernel", "cuLaunchKernel"),
    "caching allocator": ("CUDACachingAllocator",),
    "autograd engine (C++)": ("torch::autograd::Engine::",),
    "peft forward": ("peft/tuners/lora/layer.py",),
    "module call": ("Module._call_impl (",),
    "gc": ("gc_collect",),
}

WAITS = ("pthread_cond_wait", "ReadyQueue::pop", "Synchronize", "Bench.sync (")


def summarise(path: str, top: int) -> None:
    """Per thread: samples, those waiting (a condition-variable wait, a stream sync, or no frame of Python or torch
    at all), and of the others the share each marker's stacks hold and the commonest leaves."""
    threads: dict[str, Counter] = defaultdict(Counter)
    leaves: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    waits: Counter = Counter()
    for line in _lines(path):
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        totals[thread] += n
        if len(frames) <= 3 or any(w in f for f in frames for w in WAITS):
            waits[thread] += n
            continue
        for name, subs in MARKERS.items():
            if any(s in f for f in frames for s in subs):
                threads[thread][name] += n
        leaves[thread][frames[-1][:110]] += n
    for thread, total in totals.most_common():
        busy = total - waits[thread]
        print(f"{thread}: {total} samples, {waits[thread]} waiting; shares of the {busy} others:")
        for name, n in sorted(threads[thread].items(), key=lambda kv: -kv[1]):
            print(f"  {100 * n / max(busy, 1):5.1f}%  {name}")
        print("  commonest leaves:")
        for leaf, n in leaves[thread].most_common(top):
            print(f"  {100 * n / max(busy, 1):5.1f}%  {leaf}")


def _lines(path: str):
    """The raw output's lines (gzipped or not)."""
    import gzip

    return (gzip.open(path, "rt") if path.endswith(".gz") else open(path)).read().splitlines()


def by_function(path: str, top: int) -> None:
    """The main thread's busy forward samples (a ``Bench.forward`` frame on the stack, not waiting) by the innermost
    Python frame of each (its own lines and the native calls below them: what it costs itself), then by file
    (session 46)."""
    frame = re.compile(r"^(.*) \((.*\.py):\d+\)$")
    funcs: Counter = Counter()
    files: Counter = Counter()
    total = 0
    for line in _lines(path):
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not n.isdigit() or "MainThread" not in frames[0] or len(frames) <= 3 \
                or any(w in f for f in frames for w in WAITS) or not any("Bench.forward (" in f for f in frames):
            continue
        inner = next((m for m in map(frame.match, reversed(frames)) if m), None)
        if inner is None:
            continue
        total += int(n)
        where = inner.group(2).split("site-packages/")[-1]
        funcs[f"{inner.group(1)} ({where})"] += int(n)
        files[where] += int(n)
    print(f"forward: {total} busy samples of the main thread; by innermost Python frame:")
    for name, n in funcs.most_common(top):
        print(f"  {100 * n / max(total, 1):5.1f}%  {name}")
    print("by file:")
    for name, n in files.most_common(top):
        print(f"  {100 * n / max(total, 1):5.1f}%  {name}")


def main() -> None:
    if "--summarise" in sys.argv:
        p = argparse.ArgumentParser()
        p.add_argument("--summarise", required=True)
        p.add_argument("--top", type=int, default=25)
        p.add_argument("--by-function", action="store_true", help="the forward by innermost Python frame instead")
        a = p.parse_args()
        (by_function if a.by_function else summarise)(a.summarise, a.top)
        return

    from tools.bench_step import (Bench, all_configs, build_model, build_parser, make_batch, parse_shapes,
                                  resolve_device, warmup_for)

    p = build_parser()
    p.add_argument("config")
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    args.shape_list = [(args.batch, args.seq_len)] if args.seq_len else parse_shapes(args.shapes)[:1]
    (b, s), = args.shape_list
    dev = resolve_device(args.device)
    bench = Bench(build_model(args, dev), dev)
    bench.batch = make_batch(args.vocab, b, s, dev, args.seed)
    cfg = {c.name: c for c in all_configs()}[args.config]

    def step() -> None:
        bench.model.zero_grad(set_to_none=True)
        loss, _ = bench.forward(cfg)
        loss.backward()
        bench.sync()

    for _ in range(warmup_for(cfg, None) + 3):
        step()
    print(f"READY {os.getpid()}", flush=True)
    end, n = time.perf_counter() + args.seconds, 0
    while time.perf_counter() < end:
        step()
        n += 1
    print(f"{n} steps", flush=True)


if __name__ == "__main__":
    main()
