"""Where a 4x1024 step waits: GPU busy time vs wall, and the host's blocking CUDA calls, per config."""
import sys, time, statistics
sys.path.insert(0, ".")
import torch
from torch.profiler import profile, ProfilerActivity
import hyclora_hooks as hy
from tools.bench_step import build_model, build_parser, make_batch
args = build_parser().parse_args([])
args.shape_list = [(4, 1024)]
dev = torch.device("cuda")
model = build_model(args, dev)
batch = make_batch(args.vocab, 4, 1024, dev, 0)
def step(spec):
    preset, _, bits = spec.partition("@")
    kw = {"bits": int(bits)} if bits else {}
    t0 = time.perf_counter()
    if preset == "plain":
        loss = model(**batch).loss; t1 = time.perf_counter()
    else:
        with hy.compress(preset, model=model, **kw):
            loss = model(**batch).loss
        t1 = time.perf_counter()
    loss.backward(); torch.cuda.synchronize(); t2 = time.perf_counter()
    model.zero_grad(set_to_none=True)
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3
for spec in sys.argv[1].split(","):
    for _ in range(4): step(spec)
    ts = [step(spec) for _ in range(6)]
    print(spec, "fwd host med", statistics.median(t[0] for t in ts), "step med", statistics.median(t[1] for t in ts))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(2): step(spec)
    ka = prof.key_averages()
    sync = [(e.key, e.count / 2, e.cpu_time_total / 2e3) for e in ka if any(s in e.key for s in ("Synchronize", "Memcpy", "local_scalar", "cudaHostAlloc", "cudaMalloc", "cudaFree", "nonzero", "EventQuery"))]
    for k, c, t in sorted(sync, key=lambda x: -x[2])[:10]:
        print(f"   {k:45s} {c:8.1f}/step {t:8.2f} ms/step")
    # GPU busy: union of kernel intervals
    ev = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    iv = sorted((e.time_range.start, e.time_range.end) for e in ev)
    busy, cur_s, cur_e = 0, None, None
    for s, e in iv:
        if cur_e is None or s > cur_e:
            if cur_e is not None: busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else: cur_e = max(cur_e, e)
    if cur_e is not None: busy += cur_e - cur_s
    span = (iv[-1][1] - iv[0][0]) if iv else 0
    print(f"   GPU busy {busy/2e3:.1f} ms/step of span {span/2e3:.1f} ms/step")
