"""What a Llama RMSNorm costs a step, Hugging Face's ops against one pass each way (``kernels/rms_norm.py``; session
47, not run yet): the lever's size before a node is built on it.

At each token count, Hugging Face's ``LlamaRMSNorm`` (frozen weight, bf16) forward alone and forward + autograd's
backward for the input, against ``rms_norm`` and ``rms_norm`` + ``rms_norm_backward``: device time (CUDA events
around replays of a CUDA graph of one call, medians), the bytes each pass must move at least (the kernels': forward
reads ``x`` and writes the output, 4 bytes an element; backward reads the gradient and ``x`` and writes ``dx``, 6) and
the rate, per norm and per step of ``tools/bench_step.py``'s model (17 norms of ``--hidden`` a step: two a layer and
the final one, 8 layers); the kernels' results against the module's and autograd's (largest difference in rounding
steps of bf16, share of output elements not bit-equal).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/rms_norm_cost.py --tokens 4096,8192
    TRITON_INTERPRET=1 PYTHONPATH=. python benchmarks/experiments/rms_norm_cost.py --device cpu --tokens 64 --hidden 96 --reps 1
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402

from hyclora_hooks.kernels import rms_norm  # noqa: E402
from ab_setup import device_work, median_ms  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--device", default="cuda")
p.add_argument("--tokens", default="4096,8192")
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--norms", type=int, default=17, help="norms a step (8 layers: 2 each and the final one)")
p.add_argument("--reps", type=int, default=20)
args = p.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
backend = "triton"


def steps(got: torch.Tensor, want: torch.Tensor) -> float:
    """The largest difference in bf16 rounding steps of ``want``'s largest element."""
    return float((got.float() - want.float()).abs().max() / (want.float().abs().max() * torch.finfo(want.dtype).eps))


name = torch.cuda.get_device_name(dev) if cuda else "cpu"
print(f"{name} | torch {torch.__version__} | hidden {args.hidden}, {args.norms} norms a step, bf16; medians of "
      f"{args.reps} replays of a CUDA graph (calls on a CPU)")
rows = []
for t in (int(v) for v in args.tokens.split(",")):
    gen = torch.Generator(device=dev).manual_seed(t)
    norm = LlamaRMSNorm(args.hidden, eps=1e-5).to(device=dev, dtype=torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(args.hidden, device=dev, generator=gen))
    norm.weight.requires_grad_(False)
    w, eps = norm.weight, norm.variance_epsilon
    x = (3 * torch.randn(1, t, args.hidden, device=dev, generator=gen)).bfloat16().requires_grad_()
    g = torch.randn(1, t, args.hidden, device=dev, generator=gen).bfloat16()
    xd = x.detach()

    def hf_both():
        torch.autograd.grad(norm(x), x, g)

    want = norm(xd)
    (want_dx,) = torch.autograd.grad(norm(x), x, g)
    out, rstd = rms_norm.rms_norm(xd, w, eps, backend)
    dx = rms_norm.rms_norm_backward(g, xd, rstd, w, backend)
    check = (f"output {steps(out, want):.2f} steps, {float((out != want).float().mean()):.1e} not bit-equal; "
             f"dx {steps(dx, want_dx):.2f} steps")
    elems = t * args.hidden
    timed = {
        "HF forward": (lambda: norm(xd), None),
        "kernel forward": (lambda: rms_norm.rms_norm(xd, w, eps, backend), 4 * elems),
        "HF forward + backward": (hf_both, None),
        "kernel forward + backward": (lambda: rms_norm.rms_norm_backward(g, xd, rms_norm.rms_norm(xd, w, eps, backend)[1],
                                                                         w, backend), 10 * elems),
    }
    for what, (fn, nbytes) in timed.items():
        try:
            work = device_work(fn, dev)
        except RuntimeError as e:  # a capture that fails (autograd's backward in a graph): timed call by call
            print(f"{what}: no CUDA graph ({str(e).splitlines()[0][:80]}); timed call by call")
            what, work = what + " (calls)", fn
        ms = median_ms(work, args.reps, cuda)
        rate = f"{nbytes / ms / 1e9:.2f}" if nbytes else ""
        rows.append((t, what, ms, ms * args.norms, rate, check if what.startswith("kernel") else ""))
print("| tokens | what | ms a norm | ms a step | TB/s at least | kernels against HF |")
print("|---|---|---|---|---|---|")
for t, what, ms, step, rate, check in rows:
    print(f"| {t} | {what} | {ms:.4f} | {step:.3f} | {rate} | {check} |")
