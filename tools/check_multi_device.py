"""GPU check (two GPUs): a model on another GPU than the current one. Every kernel must launch on its tensors' GPU.

Not a test. Triton launches go to the current device's stream; a forward runs on the caller's current device (a
single process that spreads a model over GPUs calls layers on cuda:1 with cuda:0 current). Before NOTE [Lifetimes]
rule 13 (``engine.py``), the forward's encodes then ran on cuda:0's stream reading cuda:1 tensors, unordered with
the cuda:1 work that made them. This builds a tiny Llama with LoRA on ``--device`` (cuda:1) while cuda:0 stays
current, runs a step under each preset and counts the Triton launches whose tensors are on another device than the
current one (every launch goes through ``JITFunction.run`` here: direct launches are switched off), next to the
LoRA-gradient cosine against exact autograd on the same device.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_multi_device.py

The last thing printed is the table.
"""

from __future__ import annotations

import argparse

PRESETS = (("intra", 4), ("intra_inter", 4), ("intra_inter", 2), ("intra_inter_full_fuse", 4))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: kernels launch on their tensors' GPU.")
    p.add_argument("--device", default="cuda:1", help="where the model lives (cuda:0 stays current)")
    p.add_argument("--seq", type=int, default=256)
    args = p.parse_args(argv)
    import torch
    from triton.runtime.jit import JITFunction

    import hyclora_hooks as hy
    from hyclora_hooks import models
    from hyclora_hooks.kernels import launch
    from tools.tables import print_rows

    if torch.cuda.device_count() < 2:
        raise SystemExit("check_multi_device: needs two GPUs")
    torch.cuda.set_device(0)
    launch.DIRECT = False  # every launch through JITFunction.run, where it is counted
    seen: list[tuple[int, set]] = []
    real_run = JITFunction.run

    def run(self, *a, **kw):
        devices = {x.get_device() for x in list(a) + list(kw.values()) if isinstance(x, torch.Tensor) and x.is_cuda}
        seen.append((torch.cuda.current_device(), devices))
        return real_run(self, *a, **kw)

    JITFunction.run = run
    rows = []
    try:
        model = models.add_lora(models.tiny_llama(attn="sdpa", dtype=torch.bfloat16)).to(args.device)
        batch = {k: v.to(args.device) for k, v in
                 models.random_batch(model.config.vocab_size, batch=2, seq=args.seq, pad=0, pad_id=0).items()}

        def grads(preset=None, bits=None):
            model.zero_grad(set_to_none=True)
            if preset is None:
                loss = model(**batch).loss
            else:
                with hy.compress(preset, bits=bits):
                    loss = model(**batch).loss
            loss.backward()
            return models.lora_grads(model)

        exact = grads()
        for preset, bits in PRESETS:
            seen.clear()
            got = grads(preset, bits)
            wrong = sum(1 for current, devices in seen if devices and devices != {current})
            cos = torch.nn.functional.cosine_similarity(got.double(), exact.double(), dim=0).item()
            rows.append({"preset": f"{preset}@{bits}", "launches": len(seen), "on another device": wrong,
                         "cosine": f"{cos:.4f}"})
    finally:
        JITFunction.run = real_run
        launch.DIRECT = True
    print_rows(f"model on {args.device}, cuda:{torch.cuda.current_device()} current "
               f"({torch.cuda.get_device_name()}, torch {torch.__version__})", rows)
    return rows


if __name__ == "__main__":
    main()
