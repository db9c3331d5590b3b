"""GPU check: replayed steps (NOTE [Replay] in ``hyclora_hooks/replay.py``) give the same gradients, and their host time.

Not a test. Three copies of bench_step's Llama-2-7B-shaped model (bf16, SDPA, peft LoRA r16), one run with
``replay=True`` (the default), two with ``replay=False``, run the same batch for ``--steps`` steps per preset. Each
step's LoRA gradients of the replaying copy must equal the first deciding copy's bit for bit, or, where the two
deciding copies differ from each other too (kernels that sum in a varying order), differ by no more than they do
(two exact autograd steps are compared the same way, to show the plain backward's own spread);
from the second step on every pack of the replaying copy must have been replayed (the table shows how many LoRA
linears, norms and attentions a replayed step took as one unit each: NOTE [Replay units] in
``hyclora_hooks/units.py``). Both
are also held to exact autograd (the first deciding copy's step without hooks): the smallest cosine over the LoRA
gradient tensors. Per preset it prints the median forward host time (wall clock of the ``with`` block, the GPU
waited for before it) of the replaying and the deciding copy at ``--host-shape``, their steps alternated (the
host's speed drifts in a run).

A replayed LoRA linear's branch is one node (NOTE [LoRA branch] in ``hyclora_hooks/lora_branch.py``), and so is a
replayed decoder layer's Llama RMSNorm (NOTE [Norm node] in ``hyclora_hooks/norm_node.py``); on CUDA their forward and
backward run kernels that sum in another order than peft's and Llama's ops and autograd; ``--branch-backward ref``
(the default) runs those ops and autograd's products instead (their bits), so that the comparison above can be bit
for bit; ``auto`` runs the kernels (the step as trained), and the replaying copy is then held to the cosines and the
relative difference only.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_replay.py --layers 2 --shape 1x1024

The last thing printed is the table.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: replayed steps give the same gradients.")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--shape", default="1x1024")
    p.add_argument("--host-shape", default="1x64", help="shape of the host-time steps")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--presets", default="intra_inter@2,intra_inter@4,intra_inter_full_fuse@2,intra@2,baseline")
    p.add_argument("--device", default="cuda")
    p.add_argument("--deterministic", choices=("warn", "strict"),
                   help="torch.use_deterministic_algorithms(True): 'warn' runs every kernel as usual and warns for "
                        "those that sum in a varying order; 'strict' makes those run deterministic versions "
                        "(cuDNN attention's backward has one) or raise")
    p.add_argument("--branch-backward", choices=("ref", "auto"), default="ref",
                   help="the LoRA branch and norm nodes' passes, backward and forward: 'ref' (autograd's products "
                        "and peft's and Llama's ops, their bits) or 'auto' (their kernels on CUDA)")
    args = p.parse_args(argv)
    import torch

    from hyclora_hooks import lora_branch, norm_node

    lora_branch.BACKWARD = lora_branch.FORWARD = args.branch_backward  # its forward too (rule 6 there)
    norm_node.BACKWARD = norm_node.FORWARD = args.branch_backward

    if args.deterministic:
        set_deterministic(args.deterministic)

    import hyclora_hooks as hy
    from hyclora_hooks.codecs.calibration import reset_calibration
    from tools.bench_step import build_model, build_parser, make_batch, parse_shapes
    from tools.tables import print_rows

    margs = build_parser().parse_args(["--layers", str(args.layers), "--device", args.device])
    margs.shape_list = parse_shapes(f"{args.shape},{args.host_shape}")
    dev = torch.device(args.device)
    first = build_model(margs, dev)
    models = {True: first, False: copy.deepcopy(first), "again": copy.deepcopy(first)}
    (b, t), (hb, ht) = margs.shape_list
    batch, host_batch = make_batch(margs.vocab, b, t, dev, 0), make_batch(margs.vocab, hb, ht, dev, 1)

    def taken_grads(model) -> list:
        """The model's gradients, cleared from it for the next step."""
        grads = [q.grad.clone() for q in model.parameters() if q.grad is not None]
        model.zero_grad(set_to_none=True)
        return grads

    def exact(data: dict) -> list:
        models[False](**data).loss.backward()
        return taken_grads(models[False])

    def step(preset: str, bits: int | None, rp: bool | str, data: dict) -> tuple[list, object, float]:
        model = models[rp]
        rp = rp is True
        knobs = {"bits": bits} if bits else {}
        torch.cuda.synchronize() if dev.type == "cuda" else None
        t0 = time.perf_counter()
        with hy.compress(preset, model=model, replay=rp, **knobs) as ctx:
            loss = model(**data).loss
        t1 = time.perf_counter()
        loss.backward()
        return taken_grads(model), ctx, t1 - t0

    rows = []
    for spec in args.presets.split(","):
        preset, _, bits = spec.partition("@")
        bits = int(bits) if bits else None
        # Outlier calibration persists per model and site across contexts (NOTE [Outlier calibration]); the host
        # timing below runs two of the three copies only, so each preset starts all three from none.
        reset_calibration()
        equal, repeatable, worst, noise, replayed, packs, units = True, True, 0.0, 0.0, 0, 0, 0
        cos_on, cos_off, exact_noise = 1.0, 1.0, 0.0
        for i in range(args.steps):
            g_on, ctx, _ = step(preset, bits, True, batch)
            g_off, _, _ = step(preset, bits, False, batch)
            g_again, _, _ = step(preset, bits, "again", batch)
            equal &= grads_equal(g_on, g_off)
            repeatable &= grads_equal(g_again, g_off)
            worst = max(worst, rel_diff(g_on, g_off))
            noise = max(noise, rel_diff(g_again, g_off))
            g_exact = exact(batch)
            exact_noise = max(exact_noise, rel_diff(exact(batch), g_exact))  # plain autograd's own run-to-run spread
            cos_on, cos_off = min(cos_on, _cos(g_on, g_exact)), min(cos_off, _cos(g_off, g_exact))
            if i:
                replayed += ctx.replayed_packs
                packs += ctx.report().packs
                units += ctx.replayed_units
        times: dict = {True: [], False: []}
        for _ in range(args.steps):  # alternated step by step: the host's speed drifts within a run
            for rp in (True, False):
                times[rp].append(step(preset, bits, rp, host_batch)[2])
        host = {rp: statistics.median(ts[min(2, len(ts) - 1):]) * 1e3 for rp, ts in times.items()}
        rows.append({"preset": spec, "bitwise": equal, "decide repeatable": repeatable, "rel diff": worst,
                     "decide rel diff": noise, "exact rel diff": exact_noise, "ok": equal or worst <= noise,
                     "cos replay": cos_on,
                     "cos decide": cos_off, "packs replayed": f"{replayed}/{packs}",
                     "units a step": units / max(args.steps - 1, 1),
                     "fwd host ms replay": host[True], "fwd host ms decide": host[False],
                     "ratio": host[True] / host[False]})
        print(rows[-1], flush=True)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print_rows(f"replay | {name} | torch {torch.__version__} | {args.layers} layers | grads at {args.shape}, "
               f"host at {args.host_shape}", rows)
    return rows


def set_deterministic(mode: str) -> None:
    """``torch.use_deterministic_algorithms(True)`` for a GPU check's ``--deterministic``: ``"warn"`` runs every
    kernel as usual and warns (once each) for those that sum in a varying order, ``"strict"`` makes those run
    deterministic versions (cuDNN attention's backward has one) or raise."""
    import os
    import warnings

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=mode == "warn")
    torch.backends.cudnn.deterministic = True
    warnings.simplefilter("default")  # each nondeterministic op's warning once


def _cos(a: list, b: list) -> float:
    """Smallest cosine similarity between matching gradient tensors."""
    import torch

    return min(float(torch.nn.functional.cosine_similarity(x.float().flatten(), y.float().flatten(), dim=0))
               for x, y in zip(a, b))


def grads_equal(a: list, b: list) -> bool:
    """The same gradient tensors, bit for bit."""
    import torch

    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def rel_diff(a: list, b: list) -> float:
    """Largest ``max|a - b| / max|b|`` over the gradient tensors."""
    return max(float((x.float() - y.float()).abs().max() / y.float().abs().max().clamp_min(1e-30)) for x, y in zip(a, b))


if __name__ == "__main__":
    main()
