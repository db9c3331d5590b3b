"""Is the step's spread Python's garbage collector? intra_inter@2 with gc on, frozen after warm-up, and off."""
import gc, sys, time, statistics
sys.path.insert(0, ".")
import torch
from tools.bench_step import Bench, Config, build_model, build_parser, make_batch, parse_shapes, resolve_device
from tools.tables import print_rows

args = build_parser().parse_args(sys.argv[1:])
args.shape_list = parse_shapes(args.shapes)
device = resolve_device(args.device)
model = build_model(args, device)
bench = Bench(model, device)
rows = []
gcs = []
gc.callbacks.append(lambda phase, info: gcs.append((phase, info["generation"], time.perf_counter())))
for batch, seq in args.shape_list:
    bench.batch = make_batch(args.vocab, batch, seq, device, args.seed)
    base = bench.run(Config("plain"), warmup=3, steps=args.steps)
    for rep in range(3):
        for mode in ("on", "freeze", "off"):
            cfg = Config("intra_inter@2", "intra_inter", 2)
            gc.enable(); gc.unfreeze()
            for _ in range(6):
                loss, _c = bench.forward(cfg); loss.backward(); del loss, _c
            if mode == "freeze":
                gc.collect(); gc.freeze()
            if mode == "off":
                gc.collect(); gc.disable()
            gcs.clear()
            t = bench.timed_steps(cfg, args.steps)
            n2 = sum(1 for p, g, _ in gcs if p == "start" and g == 2)
            n = sum(1 for p, g, _ in gcs if p == "start")
            gc.enable(); gc.unfreeze()
            rows.append({"shape": f"{batch}x{seq}", "gc": mode, "step ms": statistics.median(t["step"]) * 1e3,
                         "min ms": min(t["step"]) * 1e3, "max ms": max(t["step"]) * 1e3,
                         "x plain": statistics.median(t["step"]) / base["step_s"],
                         "fwd ms": statistics.median(t["fwd"]) * 1e3, "gcs": n, "gen2": n2})
            print(rows[-1], flush=True)
            bench.free()
print("gc thresholds", gc.get_threshold(), "objects", len(gc.get_objects()))
print_rows(f"gc | {torch.cuda.get_device_name()} | torch {torch.__version__}", rows)
