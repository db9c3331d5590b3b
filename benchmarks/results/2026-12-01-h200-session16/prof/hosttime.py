"""Host time of a forward and a backward at 1x64 tokens (the GPU idle), tools/profile_step.py's model (2 layers):
plain, baseline, intra_inter@2, interleaved over 5 rounds of 4 steps (session 16)."""
import statistics, sys, time
sys.path.insert(0, '.')
import torch
from tools.bench_step import Bench, all_configs, build_model, make_batch, resolve_device, warmup_for
from tools.profile_step import build_parser
args = build_parser().parse_args(["--shape", "1x64"])
args.shape_list = [(1, 64)]
dev = resolve_device(args.device)
bench = Bench(build_model(args, dev), dev)
bench.batch = make_batch(args.vocab, 1, 64, dev, args.seed)
by = {c.name: c for c in all_configs()}
res = {n: [] for n in ("plain", "baseline", "intra_inter@2")}
for n in res:
    for _ in range(warmup_for(by[n], None)):
        loss, _ = bench.forward(by[n]); loss.backward()
for r in range(5):
    for n in res:
        for _ in range(4):
            bench.model.zero_grad(set_to_none=True); bench.sync()
            t0 = time.perf_counter(); loss, ctx = bench.forward(by[n]); t1 = time.perf_counter()
            loss.backward(); bench.sync(); t2 = time.perf_counter()
            res[n].append((t1 - t0, t2 - t1))
            del loss, ctx
for n, v in res.items():
    print(f"{n:16s} forward host {statistics.median(a for a, _ in v)*1e3:7.1f} ms   backward {statistics.median(b for _, b in v)*1e3:7.1f} ms")
