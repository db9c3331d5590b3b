"""Does Python's cyclic GC set the compressed forward's time? Same model as bench_step; counts collections per
generation and their pause time over timed steps, then times the same steps with the GC frozen after warm-up."""
import gc, sys, time, argparse
sys.path.insert(0, ".")
import torch
from tools.bench_step import Bench, all_configs, build_model, make_batch, warmup_for, build_parser
args = build_parser().parse_args(["--shapes", "4x1024"])
args.shape_list = [(4, 1024)]
dev = torch.device("cuda")
bench = Bench(build_model(args, dev), dev)
bench.batch = make_batch(args.vocab, 4, 1024, dev, 0)
cfgs = {c.name: c for c in all_configs()}
stats = {"n": [0, 0, 0], "t": [0.0, 0.0, 0.0]}
start = {}
def cb(phase, info):
    g = info["generation"]
    if phase == "start":
        start[g] = time.perf_counter()
    else:
        stats["n"][g] += 1
        stats["t"][g] += time.perf_counter() - start[g]
gc.callbacks.append(cb)
def med(x): return sorted(x)[len(x) // 2] * 1e3
print("gc objects tracked:", len(gc.get_objects()), "thresholds", gc.get_threshold())
for name in ("plain", "intra_inter@2", "intra_inter+checkpoint@2", "intra_inter@2", "intra_inter+checkpoint@2"):
    cfg = cfgs[name]
    from tools.bench_step import set_checkpointing
    set_checkpointing(bench.model, cfg.checkpoint)
    for _ in range(warmup_for(cfg, None)):
        bench.model.zero_grad(set_to_none=True); l, _ = bench.forward(cfg); l.backward(); bench.sync()
    for mode in ("gc on", "gc frozen"):
        if mode == "gc frozen":
            gc.collect(); gc.freeze()
        stats["n"], stats["t"] = [0, 0, 0], [0.0, 0.0, 0.0]
        t = bench.timed_steps(cfg, 10)
        print(f"{name:26s} {mode:9s} fwd {med(t['fwd']):6.1f} (max {max(t['fwd'])*1e3:6.1f}) bwd {med(t['bwd']):6.1f} step {med(t['step']):6.1f} (max {max(t['step'])*1e3:6.1f})"
              f" | collections/step gen0 {stats['n'][0]/10:.1f} gen1 {stats['n'][1]/10:.1f} gen2 {stats['n'][2]/10:.2f}, pause ms/step {sum(stats['t'])*1e2:.2f} (gen2 {stats['t'][2]*1e2:.2f})")
        if mode == "gc frozen":
            gc.unfreeze()
    set_checkpointing(bench.model, False)
