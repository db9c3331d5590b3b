"""GPU: where a replayed forward's host time goes (cProfile tottime), and the forward budgets."""
import cProfile, io, pstats, sys, time, statistics
sys.path.insert(0, '.')
import torch
from tools.bench_step import Bench, all_configs, build_model, make_batch, resolve_device, warmup_for, build_parser
import os
extra = ["--device", "cpu", "--hidden", "128", "--intermediate", "256", "--heads", "4", "--kv-heads", "4", "--vocab", "256"] if os.environ.get("CPU") else []
args = build_parser().parse_args(["--layers", "8"] + extra)
args.shape_list = [(1, 64), (4, 1024)]
dev = torch.device("cpu" if extra else "cuda")
bench = Bench(build_model(args, dev), dev)
cfgs = {c.name: c for c in all_configs()}
def fwd_times(cfg, shape, n=8):
    bench.batch = make_batch(args.vocab, *shape, dev, 0)
    for _ in range(3):
        loss, _ = bench.forward(cfg); loss.backward(); bench.model.zero_grad(set_to_none=True)
    host, full = [], []
    for _ in range(n):
        bench.sync(); t0 = time.perf_counter()
        loss, _ = bench.forward(cfg); t1 = time.perf_counter(); bench.sync(); t2 = time.perf_counter()
        loss.backward(); bench.sync(); bench.model.zero_grad(set_to_none=True)
        host.append((t1 - t0) * 1e3); full.append((t2 - t0) * 1e3)
    return statistics.median(host), statistics.median(full)
rows = []
for name in ["plain", "baseline", "intra_inter@2"]:
    for shape in [(1, 64), (4, 1024)]:
        h, f = fwd_times(cfgs[name], shape)
        rows.append((name, shape, h, f))
        print(f"{name:16s} {shape} fwd host {h:7.1f} ms  fwd synced {f:7.1f} ms", flush=True)
for name in ["baseline", "intra_inter@2"]:
    cfg = cfgs[name]
    bench.batch = make_batch(args.vocab, 1, 64, dev, 0)
    for _ in range(3):
        loss, _ = bench.forward(cfg); loss.backward(); bench.model.zero_grad(set_to_none=True)
    pr = cProfile.Profile()
    for _ in range(5):
        bench.sync()
        pr.enable(); loss, ctx = bench.forward(cfg); pr.disable()
        loss.backward(); bench.model.zero_grad(set_to_none=True)
    print(f"==== {name} replayed {ctx.replayed_packs}")
    s = io.StringIO(); st = pstats.Stats(pr, stream=s); st.sort_stats('tottime').print_stats(45)
    print(s.getvalue()[-9000:])
    s = io.StringIO(); st = pstats.Stats(pr, stream=s); st.sort_stats('cumtime').print_stats('hyclora', 40)
    print(s.getvalue()[-7000:])
for r in rows:
    print(r)
