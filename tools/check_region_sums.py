"""GPU check: the fused LoRA sum in checkpointed layers (NOTE [Region sums] in ``hyclora_hooks/region_sums.py``)
gives the gradients peft's sum gives, bit for bit, with the kernels the GPU runs.

Not a test (``tests/test_checkpointing.py`` checks the same on the CPU, the kernel under the interpreter). One
copy of bench_step's Llama-2-7B-shaped model (bf16, SDPA, peft LoRA r16), every decoder layer under non-reentrant
checkpointing, the same batch every step, the RNG seeded before each (LoRA dropout draws its masks from it). Per
configuration, after ``--warmup`` steps (outlier calibration over, the replay plan recorded): one step with region
sums off (``region_sums.ENABLED = False``), then on, then ``--noise-steps`` more off. A row is ``ok`` when the step
with them equals the first without, bit for bit, or differs by no more than the steps without differ among
themselves (the attention's backward sums in a varying order unless ``--deterministic strict`` asks cuDNN for its
deterministic one: only then is bit for bit the test). ``baseline`` (nothing compressed) is also held to plain
checkpointing without any context: equal, or no farther from it than a step without region sums.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_region_sums.py --layers 2 --shape 1x1024 [--lora-dropout 0.1]

The last thing printed is the table.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: fused LoRA sums in checkpointed layers keep the bits.")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--shape", default="1x1024")
    p.add_argument("--presets", default="baseline,intra_inter@2,intra_inter@4")
    p.add_argument("--warmup", type=int, default=7)
    p.add_argument("--noise-steps", type=int, default=3, help="steps without region sums after the one with")
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--model-args", default="", help="more of tools/bench_step.py's model arguments, e.g. "
                   "'--hidden 64 --intermediate 128 --heads 4 --kv-heads 4 --vocab 128' (a CPU check)")
    p.add_argument("--deterministic", choices=("warn", "strict"),
                   help="torch.use_deterministic_algorithms(True), as in tools/check_replay.py")
    args = p.parse_args(argv)
    import torch

    import hyclora_hooks as hy
    from hyclora_hooks import region_sums
    from hyclora_hooks.codecs.calibration import reset_calibration
    from tools.bench_step import build_model, build_parser, make_batch, parse_shapes, set_checkpointing
    from tools.check_replay import grads_equal, rel_diff, set_deterministic
    from tools.tables import print_rows

    if args.deterministic:
        set_deterministic(args.deterministic)

    margs = build_parser().parse_args(["--layers", str(args.layers), "--device", args.device,
                                       "--lora-dropout", str(args.lora_dropout)] + args.model_args.split())
    margs.shape_list = parse_shapes(args.shape)
    dev = torch.device(args.device)
    model = build_model(margs, dev)
    (b, t), = margs.shape_list
    batch = make_batch(margs.vocab, b, t, dev, 0)
    set_checkpointing(model, True)

    def step(make, on: bool) -> list:
        """One step's gradients under ``make()`` with region sums ``on``, cleared from the model."""
        region_sums.ENABLED = on
        try:
            torch.manual_seed(1)
            with make():
                loss = model(**batch).loss
            loss.backward()
        finally:
            region_sums.ENABLED = True
        grads = [q.grad.clone() for q in model.parameters() if q.grad is not None]
        model.zero_grad(set_to_none=True)
        return grads

    rows = []
    plain = step(nullcontext, True)
    for spec in args.presets.split(","):
        preset, _, bits = spec.partition("@")
        knobs = {"bits": int(bits)} if bits else {}
        reset_calibration()

        def make():
            return hy.compress(preset, model=model, **knobs)

        for _ in range(args.warmup):
            step(make, True)
        off = step(make, False)
        on = step(make, True)
        offs = [off] + [step(make, False) for _ in range(args.noise_steps)]
        noise = max(rel_diff(x, y) for i, x in enumerate(offs) for y in offs[:i]) if len(offs) > 1 else 0.0
        row = {"preset": spec, "grad tensors": len(on), "bitwise": grads_equal(on, off), "rel diff": rel_diff(on, off),
               "off vs off rel diff": noise}
        row["ok"] = row["bitwise"] or row["rel diff"] <= noise
        if preset == "baseline":
            row["= plain checkpointing"] = grads_equal(on, plain) \
                or rel_diff(on, plain) <= max(rel_diff(o, plain) for o in offs)
            row["ok"] = row["ok"] and row["= plain checkpointing"]
        else:
            row["= plain checkpointing"] = "-"
        rows.append(row)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print_rows(f"region sums | {name} | torch {torch.__version__} | {args.layers} layers | {args.shape} | "
               f"lora_dropout {args.lora_dropout} | deterministic {args.deterministic}", rows)
    return rows


if __name__ == "__main__":
    main()
