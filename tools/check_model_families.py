"""GPU check: LoRA-gradient fidelity of every tiny model family on CUDA, in bf16 and under autocast, padded or not.

Not a test: CPU tests cannot see kernels that read a saved tensor's layout rather than its values (cuDNN's SDPA
backward reads its output in the layout its forward wrote; NOTE [Lifetimes] rule 8 in engine.py). For each model
family of ``tests/test_inter.py`` (Llama, Qwen2, Mistral, GPT-2, RoBERTa, Phi-3, Gemma, GPT-NeoX), SDPA and eager
attention, a bf16 model and an fp32 model under bf16 autocast, and a batch right-padded or not (transformers then
passes SDPA a boolean mask), it prints the cosine of all LoRA gradients under ``intra_inter`` against exact
autograd in the same setting. At 8 bits expect 1.0000; session 10 found 0.85-0.94 for padded bf16 SDPA models.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_model_families.py
    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_model_families.py --models llama,gpt2 --bits 8

The last thing printed is the table. (``TRITON_INTERPRET=0`` matters only where something has set it to 1:
tests/test_inter.py does when imported.)
"""

from __future__ import annotations

import argparse

FAMILIES = ("llama", "qwen2", "mistral", "gpt2", "roberta", "phi3", "gemma", "gpt_neox")  # hyclora_hooks.models.tiny_*


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="GPU check: LoRA-gradient fidelity of every tiny model family on CUDA.")
    p.add_argument("--models", default="", help=f"comma list (default: {','.join(FAMILIES)})")
    p.add_argument("--bits", default="8,4", help="comma list of bit widths for intra_inter")
    p.add_argument("--pad", type=int, default=7, help="padded tokens in the last row of the padded batch")
    p.add_argument("--device", default="cuda")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the table; return its rows (model, attention, mode, pad, bits, cosine)."""
    args = _parse(argv)
    import torch
    from rich.console import Console
    from rich.table import Table

    import hyclora_hooks as hy
    from hyclora_hooks import models
    from hyclora_hooks.models import add_lora, lora_grads, random_batch

    builders = {n: getattr(models, f"tiny_{n}") for n in FAMILIES}

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()

    names = [m for m in args.models.split(",") if m] or list(FAMILIES)
    bits = [int(b) for b in args.bits.split(",")]
    rows: list[dict] = []
    for name in names:
        for attn in ("sdpa", "eager"):
            for mode, dtype in (("bf16", torch.bfloat16), ("autocast", torch.float32)):
                for pad in (0, args.pad):
                    model = add_lora(builders[name](attn=attn, dtype=dtype)).to(args.device)
                    batch = random_batch(model.config.vocab_size, batch=2, seq=32, pad=pad,
                                         pad_id=model.config.pad_token_id or 0)
                    batch = {k: v.to(args.device) for k, v in batch.items()}

                    def grads(policy=None, **knobs):
                        model.zero_grad(set_to_none=True)
                        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16,
                                            enabled=mode == "autocast"):
                            if policy is None:
                                loss = model(**batch).loss
                            else:
                                with hy.compress(policy, **knobs):
                                    loss = model(**batch).loss
                        loss.backward()
                        return lora_grads(model)

                    exact = grads()
                    for b in bits:
                        rows.append({"model": name, "attn": attn, "mode": mode, "pad": pad, "bits": b,
                                     "cosine": cosine(grads("intra_inter", bits=b), exact)})
    table = Table(title=f"LoRA-gradient cosine to exact autograd, intra_inter ({torch.cuda.get_device_name()}, "
                        f"torch {torch.__version__})" if args.device.startswith("cuda") else "LoRA-gradient cosine")
    for col in ("model", "attention", "mode", "padded", *(f"{b} bits" for b in bits)):
        table.add_column(col)
    for i in range(0, len(rows), len(bits)):
        r = rows[i]
        table.add_row(r["model"], r["attn"], r["mode"], str(r["pad"]),
                      *(f"{x['cosine']:.4f}" for x in rows[i:i + len(bits)]))
    Console(width=120).print(table)
    worst = {b: min(r["cosine"] for r in rows if r["bits"] == b) for b in bits}
    print("worst: " + ", ".join(f"{b} bits {c:.4f}" for b, c in worst.items()))
    return rows


if __name__ == "__main__":
    main()
