import sys, time, statistics
sys.path.insert(0, '.')
import torch
from tools.bench_step import Bench, all_configs, build_model, build_parser, make_batch, warmup_for
args = build_parser().parse_args(["--layers", "8"])
B, S = map(int, sys.argv[2].split("x"))
args.shape_list = [(B, S)]
dev = torch.device("cuda")
bench = Bench(build_model(args, dev), dev)
bench.batch = make_batch(args.vocab, B, S, dev, 0)
names = sys.argv[1].split(",")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 20
cfgs = {c.name: c for c in all_configs()}
for name in names:
    cfg = cfgs[name]
    for _ in range(warmup_for(cfg, None) + 1):
        loss, _ = bench.forward(cfg); loss.backward(); bench.model.zero_grad(set_to_none=True)
torch.cuda.synchronize()
res = {k: ([], []) for k in names}
for r in range(n):
    for name in names:
        torch.cuda.synchronize()
        t0 = time.perf_counter(); loss, ctx = bench.forward(cfgs[name]); t1 = time.perf_counter()
        loss.backward(); bench.model.zero_grad(set_to_none=True); torch.cuda.synchronize(); t2 = time.perf_counter()
        res[name][0].append(t1 - t0); res[name][1].append(t2 - t0)
for k, (f, s) in res.items():
    print(f"{k:20s} fwd host median {statistics.median(f)*1e3:7.2f} ms  step median {statistics.median(s)*1e3:7.2f}  min {min(s)*1e3:7.2f}")
