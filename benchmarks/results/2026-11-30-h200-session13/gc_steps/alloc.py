"""Per step: forward host time, forward event time, and the CUDA caching allocator's device allocs/frees/retries
(does the host slow down in steps where the allocator goes to the driver?). 8 layers, 4x1024, intra_inter@2."""
import sys, time, gc
sys.path.insert(0, '.')
import torch
from tools.bench_step import Bench, all_configs, build_model, make_batch, build_parser
args = build_parser().parse_args(["--layers", "8"])
args.shape_list = [(4, 1024)]
dev = torch.device("cuda")
bench = Bench(build_model(args, dev), dev)
bench.batch = make_batch(args.vocab, 4, 1024, dev, 0)
cfgs = {c.name: c for c in all_configs()}
keys = ["num_device_alloc", "num_device_free", "num_alloc_retries", "num_sync_all_streams"]
for name in ["intra_inter@2", "plain", "intra_inter@2"]:
    cfg = cfgs[name]
    for i in range(24):
        s0 = torch.cuda.memory_stats()
        gcs0 = sum(g["collections"] for g in gc.get_stats())
        bench.sync(); t0 = time.perf_counter()
        e0 = torch.cuda.Event(enable_timing=True); e1 = torch.cuda.Event(enable_timing=True); e2 = torch.cuda.Event(enable_timing=True)
        e0.record()
        loss, _ = bench.forward(cfg)
        t1 = time.perf_counter(); e1.record()
        loss.backward(); e2.record(); bench.sync(); t2 = time.perf_counter()
        bench.model.zero_grad(set_to_none=True); del loss
        s1 = torch.cuda.memory_stats()
        gcs1 = sum(g["collections"] for g in gc.get_stats())
        d = {k: s1.get(k, 0) - s0.get(k, 0) for k in keys}
        print(f"{name:14s} step {i:2d} fwd host {1e3*(t1-t0):6.1f} fwd ev {e0.elapsed_time(e1):6.1f} bwd ev {e1.elapsed_time(e2):6.1f} "
              f"step {1e3*(t2-t0):6.1f} gc {gcs1-gcs0} " + " ".join(f"{k[4:]}={v}" for k, v in d.items()), flush=True)
