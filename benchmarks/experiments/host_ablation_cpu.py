"""Where a hooked forward's host time goes, by taking parts away (dev CPU; session 13).

8 tiny Llama layers at 1 x 64 tokens: the forward is all host work. Each line replaces one part of the hooks with
a stand-in and prints the median forward time (the stand-ins break what they replace: the gradients of those steps
are not the point). Start from plain (no context), then an identity torch-function mode with identity saved-tensor
hooks, then the policy under ``compress()`` with its parts taken away one at a time:

    python benchmarks/experiments/host_ablation_cpu.py [policy]     # default: baseline (nothing compressed)
"""

import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import engine, replay, tracking  # noqa: E402
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402

policy = sys.argv[1] if len(sys.argv) > 1 else "baseline"
args = build_parser().parse_args(["--device", "cpu", "--layers", "8", "--hidden", "128", "--intermediate", "256",
                                  "--heads", "4", "--kv-heads", "4", "--vocab", "256"])
args.shape_list = [(1, 64)]
model = build_model(args, torch.device("cpu"))
batch = make_batch(args.vocab, 1, 64, torch.device("cpu"), 0)


class Identity(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@contextmanager
def identity_hooks():
    with Identity(), torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        yield


def forward_ms(make_context, steps: int = 25) -> float:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with make_context():
            loss = model(**batch).loss
        times.append(time.perf_counter() - t0)
        loss.backward()
        model.zero_grad(set_to_none=True)
    return statistics.median(times[5:]) * 1e3


def hooked():
    return hy.compress(policy, model=model, bits=2)


@contextmanager
def patched(owner, name, value):
    old = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


print(f"plain                              {forward_ms(nullcontext):6.1f} ms")
print(f"identity mode + identity hooks     {forward_ms(identity_hooks):6.1f} ms")
print(f"{policy:34s} {forward_ms(hooked):6.1f} ms")
with patched(tracking.OpTracker, "_tag", lambda *a: None):
    print(f"  without producer tags            {forward_ms(hooked):6.1f} ms")
with patched(replay.Trace, "op", lambda self, name, a, k: self.sigs.append(name)):
    print(f"  without signature values         {forward_ms(hooked):6.1f} ms")
with patched(engine.Compressor, "_pack", lambda self, t: t):
    print(f"  packs returning the tensor       {forward_ms(hooked):6.1f} ms")

    def minimal(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))
    with patched(tracking.OpTracker, "__torch_function__", minimal):
        print(f"  ... and a tracker that only calls {forward_ms(hooked):6.1f} ms")
