import sys, time, statistics, gc
sys.path.insert(0, '.')
import torch
from tools.bench_step import Bench, all_configs, build_model, build_parser, make_batch, warmup_for
args = build_parser().parse_args(["--layers", "8"] + (["--device", "cpu", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "4", "--vocab", "128"] if sys.argv[2] == "cpu" else []))
B, S = (1, 16) if sys.argv[2] == "cpu" else map(int, sys.argv[2].split("x"))
args.shape_list = [(B, S)]
dev = torch.device("cpu") if sys.argv[2] == "cpu" else torch.device("cuda")
if dev.type == "cpu": torch.set_num_threads(1)
bench = Bench(build_model(args, dev), dev)
bench.batch = make_batch(args.vocab, B, S, dev, 0)
names = sys.argv[1].split(",")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 20
cfgs = {c.name: c for c in all_configs()}
state = {"t": 0.0, "t0": 0.0, "n": [0, 0, 0]}
def cb(phase, info):
    if phase == "start": state["t0"] = time.perf_counter()
    else:
        state["t"] += time.perf_counter() - state["t0"]; state["n"][info["generation"]] += 1
gc.callbacks.append(cb)
for name in names:
    cfg = cfgs[name]
    for _ in range(warmup_for(cfg, None) + 1):
        loss, _ = bench.forward(cfg); loss.backward(); bench.model.zero_grad(set_to_none=True)
bench.sync()
for mode in ("gc", "freeze", "nogc"):
    if mode == "freeze": gc.collect(); gc.freeze()
    if mode == "nogc": gc.disable()
    res = {k: ([], [], [], [0, 0, 0]) for k in names}
    for r in range(n):
        for name in names:
            bench.sync()
            state["t"] = 0.0; state["n"] = [0, 0, 0]
            t0 = time.perf_counter(); loss, ctx = bench.forward(cfgs[name]); t1 = time.perf_counter()
            gct = state["t"]; cnt = list(state["n"])
            loss.backward(); bench.model.zero_grad(set_to_none=True); bench.sync(); t2 = time.perf_counter()
            f, s, g, c = res[name]; f.append(t1 - t0); s.append(t2 - t0); g.append(gct)
            for i in range(3): c[i] += cnt[i]
    for k, (f, s, g, c) in res.items():
        print(f"{mode:6s} {k:16s} fwd host {statistics.median(f)*1e3:7.2f} ms (gc in fwd {statistics.median(g)*1e3:5.2f} mean {statistics.mean(g)*1e3:5.2f}; gens/fwd {[round(x/n,2) for x in c]})  step {statistics.median(s)*1e3:7.2f} min {min(s)*1e3:7.2f}")
    gc.enable(); gc.unfreeze()
