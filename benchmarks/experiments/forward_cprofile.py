"""cProfile of a hooked forward on the GPU machine (session 7): ``tools/bench_step.py``'s model at 1 x 64 tokens (the
GPU idle, so the forward's time is the host's; ``--shape 4x1024`` profiles the benchmark's host path with the GPU busy),
10 forwards after warm-up; prints functions by own time and the callees of the engine's recipe planning.
``PYTHONPATH=. python benchmarks/experiments/forward_cprofile.py intra_inter@4`` (more arguments go to
``tools/profile_step.py``'s parser, e.g. ``--layers 2``)."""
import cProfile, io, pstats, sys
sys.path.insert(0, '.')
from tools.bench_step import Bench, all_configs, build_model, make_batch, parse_shapes, resolve_device, warmup_for
from tools.profile_step import build_parser
args = build_parser().parse_args(["--shape", "1x64"] + sys.argv[2:])
(bsz, seq), = args.shape_list = parse_shapes(args.shape)
dev = resolve_device(args.device)
bench = Bench(build_model(args, dev), dev)
bench.batch = make_batch(args.vocab, bsz, seq, dev, args.seed)
cfg = {c.name: c for c in all_configs()}[sys.argv[1]]
for _ in range(warmup_for(cfg, None)):  # past outlier calibration (and the recording step)
    loss, _ = bench.forward(cfg); loss.backward()
bench.sync()
pr = cProfile.Profile()
for _ in range(10):
    bench.model.zero_grad(set_to_none=True)
    pr.enable(); loss, _ = bench.forward(cfg); pr.disable(); loss.backward()
bench.sync()
st = pstats.Stats(pr)
s = io.StringIO(); st.stream = s
st.sort_stats('tottime').print_stats(45)
st.sort_stats('cumulative').print_stats(r'hyclora_hooks|kernels', 40)
print(s.getvalue().replace('/opt/torch/.venv/lib/python3.12/site-packages/', '')[:30000])
