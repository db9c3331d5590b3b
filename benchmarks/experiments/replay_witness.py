"""Feasibility of autograd as the witness of a replayed recipe (docs/replay.md, rule 3; session 7, dev CPU).

A recipe says "the saved tensor t = f(entries)". If t's ``grad_fn`` reaches, through ``next_functions``, the
``grad_fn`` of every tensor its leaf entries stored, the autograd graph itself shows the data flow the recipe
claims, and a replayed step could check it with a walk instead of the op tracker's lineage. This script runs a
tiny Llama with LoRA under ``intra_inter`` (SDPA and eager), notes each stored entry's ``grad_fn``, and for every
recipe built in the measured step reports: whether t has a ``grad_fn``, whether every leaf's is reachable (and
how many hops the walk took), and the walk's time. ``python benchmarks/experiments/replay_witness.py``."""
import statistics
import sys
import time
from collections import Counter

import torch

sys.path.insert(0, ".")
import hyclora_hooks as hyclora  # noqa: E402
from hyclora_hooks import engine, lineage  # noqa: E402
from hyclora_hooks.models import add_lora, random_batch, tiny_llama  # noqa: E402

MAX_HOPS = 64
stored_fn: dict = {}  # id(entry) -> the grad_fn (or None) of the tensor it stored
results: list = []
measuring = [False]


def walk(root, targets: set) -> int | None:
    """Breadth-first over next_functions from ``root``: hops until every target node was seen, or None."""
    seen, frontier, left, hops = set(), [root], set(targets), 0
    while frontier and left and hops <= MAX_HOPS:
        nxt = []
        for fn in frontier:
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            left.discard(id(fn))
            nxt.extend(f for f, _ in fn.next_functions)
        frontier, hops = nxt, hops + 1
    return hops if not left else None


orig_admit, orig_recipe = engine.Compressor._admit, engine.Compressor._recipe


def admit(self, t, site, *a, **k):
    entry = orig_admit(self, t, site, *a, **k)
    stored_fn[id(entry)] = t.grad_fn
    return entry


def recipe(self, t, site, node):
    entry = orig_recipe(self, t, site, node)
    if measuring[0]:
        leaves = lineage.leaf_entries(node)
        fns = [stored_fn.get(id(e)) for e in leaves]
        t0 = time.perf_counter()
        if t.grad_fn is None:
            outcome, hops = "t has no grad_fn", None
        elif any(f is None for f in fns):
            outcome, hops = "a leaf has no grad_fn", None
        else:
            hops = walk(t.grad_fn, {id(f) for f in fns})
            outcome = "witnessed" if hops is not None else "a leaf not reached"
        results.append((site.op_class, site.role, outcome, hops, time.perf_counter() - t0, len(leaves)))
    stored_fn[id(entry)] = t.grad_fn
    return entry


engine.Compressor._admit, engine.Compressor._recipe = admit, recipe
for attn in ("sdpa", "eager"):
    torch.manual_seed(0)
    model = add_lora(tiny_llama(attn=attn))
    batch = random_batch(256, 2, 32, seed=0)
    results.clear()
    for step in range(2):
        measuring[0] = step == 1
        with hyclora.compress("intra_inter", bits=4):
            loss = model(**batch).loss
        loss.backward()
        stored_fn.clear()
    outcomes = Counter(r[2] for r in results)
    hops = [r[3] for r in results if r[3] is not None]
    times = [r[4] * 1e6 for r in results if r[2] == "witnessed"]
    print(f"{attn}: {len(results)} recipes; " + ", ".join(f"{k}: {v}" for k, v in outcomes.most_common()))
    if hops:
        print(f"  witnessed: hops median {statistics.median(hops)}, max {max(hops)}; walk median "
              f"{statistics.median(times):.1f} us, max {max(times):.1f} us")
    for (cls, role, outcome), n in Counter((r[0], r[1], r[2]) for r in results if r[2] != "witnessed").items():
        print(f"  not witnessed: {cls}/{role}: {outcome} (x{n})")
