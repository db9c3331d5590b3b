"""Per step forward host time and gc collections for intra_inter@2 at 4x1024 under: gc as is, gc.freeze() after
warm-up, gc disabled during the step (collected between steps), alternated in blocks."""
import sys, time, gc, statistics
sys.path.insert(0, '.')
import torch
from tools.bench_step import Bench, all_configs, build_model, make_batch, build_parser
args = build_parser().parse_args(["--layers", "8"])
args.shape_list = [(4, 1024)]
dev = torch.device("cuda")
bench = Bench(build_model(args, dev), dev)
bench.batch = make_batch(args.vocab, 4, 1024, dev, 0)
cfg = {c.name: c for c in all_configs()}["intra_inter@2"]
def step():
    bench.sync(); t0 = time.perf_counter()
    loss, _ = bench.forward(cfg)
    t1 = time.perf_counter(); loss.backward(); bench.sync(); t2 = time.perf_counter()
    bench.model.zero_grad(set_to_none=True)
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3
for _ in range(4):
    step()
res = {}
for rnd in range(2):
    for mode in ["as is", "frozen", "off in step"]:
        if mode == "frozen":
            gc.collect(); gc.freeze()
        fw, st, gcs = [], [], []
        for i in range(20):
            c0 = [g["collections"] for g in gc.get_stats()]
            if mode == "off in step":
                gc.disable()
            f, s = step()
            if mode == "off in step":
                gc.enable()
            c1 = [g["collections"] for g in gc.get_stats()]
            fw.append(f); st.append(s); gcs.append(tuple(b - a for a, b in zip(c0, c1)))
        if mode == "frozen":
            gc.unfreeze()
        full = sum(1 for g in gcs if g[2])
        print(f"round {rnd} {mode:12s} fwd host median {statistics.median(fw):6.1f} max {max(fw):6.1f}  step median "
              f"{statistics.median(st):6.1f} max {max(st):6.1f}  gen2 collections in {full} of 20 steps; "
              f"per-step (gen0,gen1,gen2) e.g. {gcs[:6]}", flush=True)
