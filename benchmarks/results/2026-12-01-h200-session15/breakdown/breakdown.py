"""intra_inter@2 stored bytes by op (4x1024) and the allocator's act bytes of group-size variants, with and
without the embedding output requiring grad (session 15)."""
import sys, torch
sys.path.insert(0, '.')
from tools.bench_step import build_model, build_parser, make_batch
import hyclora_hooks as hy
args = build_parser().parse_args(["--device", "cuda"])
args.shape_list = [(4, 1024), (1, 8192)]
model = build_model(args, torch.device("cuda"))
pols = ["intra_inter", "benchmarks/results/2026-12-01-h200-session15/breakdown/floor4_g128.toml",
        "benchmarks/results/2026-12-01-h200-session15/breakdown/all_g128.toml"]
for shape in args.shape_list:
    batch = make_batch(32000, *shape, torch.device("cuda"), 0)
    for hook in (False, True):
        if hook:
            model.enable_input_require_grads()
        else:
            try: model.disable_input_require_grads()
            except AttributeError: pass
        rows = []
        for pol in [None] + pols:
            for i in range(7):
                torch.cuda.synchronize(); before = torch.cuda.memory_allocated()
                if pol is None:
                    loss = model(**batch).loss
                else:
                    with hy.compress(pol, model=model, bits=2) as ctx:
                        loss = model(**batch).loss
                act = torch.cuda.memory_allocated() - before
                if i == 6:
                    acct = ctx.report().stored_bytes if pol else act
                    rows.append((pol or "plain", act, acct))
                    if pol == "intra_inter" and shape == (4, 1024) and not hook:
                        print(ctx.report())
                loss.backward(); model.zero_grad(set_to_none=True); del loss
        plain = rows[0][1]
        for name, act, acct in rows:
            print(f"{shape} input_grads={hook} {name:<34} act {act / 2**30:.4f} GiB  mem x {plain / act:.2f}  acct/alloc {acct / act:.3f}")
