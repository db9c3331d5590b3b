"""A hooked forward's host time built up part by part (dev CPU, session 23): 8 layers of width 64 at 1 x 16 tokens,
one thread, so the forward is host work. Rows: plain; an identity torch-function mode; that and identity
saved-tensor hooks; the module tracker's global hooks alone; the op tracker (frames, producer tags) on top; with
identity saved-tensor hooks; with a replay ``Trace`` (signatures, slot tags); ``compress("baseline")`` (all of it,
packs that keep everything). Three rounds each, interleaved; the fastest is the figure (a shared 2-core machine).

    python benchmarks/experiments/host_buildup_cpu.py
"""
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import replay, tracking  # noqa: E402
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402

torch.set_num_threads(1)
args = build_parser().parse_args(["--device", "cpu", "--layers", "8", "--hidden", "64", "--intermediate", "128",
                                  "--heads", "4", "--kv-heads", "4", "--vocab", "128"])
args.shape_list = [(1, 16)]
model = build_model(args, torch.device("cpu"))
batch = make_batch(args.vocab, 1, 16, torch.device("cpu"), 0)


class Identity(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@contextmanager
def ctx(kind):
    with ExitStack() as st:
        if kind == "plain": yield; return
        if "mode" in kind: st.enter_context(Identity())
        if "hooks" in kind: st.enter_context(torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t))
        if "modtrack" in kind:
            mt = tracking.ModuleTracker(tracking.ParamRegistry()); mt.start(); st.callback(mt.stop)
        if "optrack" in kind:
            mt = tracking.ModuleTracker(tracking.ParamRegistry()); mt.start(); st.callback(mt.stop)
            ot = tracking.OpTracker(mt); st.enter_context(ot)
        if "trace" in kind:
            ot.trace = replay.Trace(mt.params.is_param)
        if kind.startswith("hy:"):
            st.enter_context(hy.compress(kind[3:], model=model, bits=2))
        yield


def ms(kind, n=40):
    for _ in range(4):
        with ctx(kind): l = model(**batch).loss
        l.backward(); model.zero_grad(set_to_none=True)
    ts = []
    for _ in range(n):
        t0=time.perf_counter()
        with ctx(kind): l = model(**batch).loss
        ts.append(time.perf_counter()-t0); l.backward(); model.zero_grad(set_to_none=True)
    return statistics.median(ts)*1e3


kinds = ["plain", "mode", "mode+hooks", "modtrack", "optrack", "optrack+hooks", "optrack+trace+hooks", "hy:baseline"]
res = {k: [] for k in kinds}
for r in range(3):
    for k in kinds: res[k].append(ms(k))
for k, v in res.items(): print(f"{k:22s}", " ".join(f"{x:6.1f}" for x in v), f"  min {min(v):6.1f}")
