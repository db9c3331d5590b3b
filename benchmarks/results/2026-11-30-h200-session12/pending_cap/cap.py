"""Does the pending non-finite cap (engine.MAX_PENDING_BYTES) serialise host and GPU? Step and peak per cap."""
import sys
sys.path.insert(0, ".")
import torch
from hyclora_hooks import engine
from tools.bench_step import Bench, Config, build_model, build_parser, make_batch, parse_shapes, resolve_device
from tools.tables import print_rows

args = build_parser().parse_args(sys.argv[1:])
args.shape_list = parse_shapes(args.shapes)
device = resolve_device(args.device)
model = build_model(args, device)
bench = Bench(model, device)
rows = []
for batch, seq in args.shape_list:
    bench.batch = make_batch(args.vocab, batch, seq, device, args.seed)
    base = bench.run(Config("plain"), warmup=3, steps=args.steps)
    bench.free()
    rows.append({"shape": f"{batch}x{seq}", "config": "plain", "cap MiB": "-", "step ms": base["step_s"] * 1e3,
                 "x plain": 1.0, "fwd ms": base["fwd_s"] * 1e3, "peak GiB": base["peak_over_resident_bytes"] / 2**30,
                 "act GiB": base["act_alloc_bytes"] / 2**30})
    print(rows[-1], flush=True)
    for rep in range(2):
        for cap in (256 << 20, 2 << 30, 1 << 50):
            for cfg in (Config("intra@2", "intra", 2), Config("intra_inter@2", "intra_inter", 2)):
                engine.MAX_PENDING_BYTES = cap
                res = bench.run(cfg, warmup=6, steps=args.steps)
                bench.free()
                rows.append({"shape": f"{batch}x{seq}", "config": cfg.name, "cap MiB": "inf" if cap > 1 << 45 else cap >> 20,
                             "step ms": res["step_s"] * 1e3, "x plain": res["step_s"] / base["step_s"],
                             "fwd ms": res["fwd_s"] * 1e3, "peak GiB": res["peak_over_resident_bytes"] / 2**30,
                             "act GiB": res["act_alloc_bytes"] / 2**30})
                print(rows[-1], flush=True)
print_rows(f"pending cap | {torch.cuda.get_device_name()} | torch {torch.__version__}", rows)
