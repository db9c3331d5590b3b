"""GPU check: LoRA-gradient fidelity of lossy q/k under every SDPA backend torch offers on this machine.

Not a test. Each SDPA backend saves its own tensors for backward (cuDNN's logsumexp is ``(B, H, L, 1)``, flash's
``(B, H, L)``); a backend whose logsumexp the classifier misses keeps it exact beside lossy q/k, and backward's
softmax no longer matches the decoded q/k. That is invisible on CPU. For one batch, this prints the cosine of all
LoRA gradients against exact autograd *under the same backend*, per backend and policy, and what codec each
attention role got (``logsumexp`` must read ``recompute`` wherever q/k are lossy).

    PYTHONPATH=. python tools/check_sdpa_backends.py                       # SmolLM2 + KJV (needs the demo packages)
    PYTHONPATH=. python tools/check_sdpa_backends.py --model tiny-llama    # no downloads
    PYTHONPATH=. python tools/check_sdpa_backends.py --policy intra_inter --policy my_qk4.toml

The last thing printed is the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", help="smollm2, tiny-llama, or any --model spec of `hyclora ab`")
    p.add_argument("--policy", action="append", default=None, help="repeatable (default: intra_inter)")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--device", default="cuda")
    p.add_argument("--pad", type=int, default=0,
                   help="right-pad the batch's last row by this many tokens (attention_mask 0, labels -100): the "
                        "boolean-mask path, whose replay runs the math kernel")
    return p.parse_args(argv)


def _backends(device: str) -> list:
    from torch.nn.attention import SDPBackend

    if device.startswith("cuda"):
        return [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    return [SDPBackend.FLASH_ATTENTION]


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the table; return its rows (backend, policy, cosine or None, codecs of q / k / logsumexp)."""
    args = _parse(argv)
    import torch
    import torch.nn.functional as F
    from rich.console import Console
    from rich.table import Table
    from torch.nn.attention import sdpa_kernel

    import hyclora_hooks as hy
    from hyclora_hooks import corpus, zoo

    loaded = zoo.load_model(args.model)
    model = zoo.ensure_lora(loaded.model, r=8, random_b=True, seed=0).to(args.device)
    batch = corpus.train_eval_batches("auto", loaded.tokenizer, model.config.vocab_size, batch=args.batch_size,
                                      seq=args.seq_len, n_train=1, n_eval=0)[0][0]
    if args.pad:
        batch = dict(batch)
        mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).clone()
        labels = batch.get("labels", batch["input_ids"]).clone()
        mask[-1, -args.pad:], labels[-1, -args.pad:] = 0, -100
        batch["attention_mask"], batch["labels"] = mask, labels
    batch = {k: v.to(args.device) for k, v in batch.items()}
    policies = args.policy or ["intra_inter"]

    def lora_grads(policy, backend):
        model.zero_grad(set_to_none=True)
        with sdpa_kernel(backend):
            if policy is None:
                loss, report = model(**batch).loss, None
            else:
                with hy.compress(policy, model=model, bits=args.bits) as ctx:
                    loss = model(**batch).loss
                report = ctx.report()
            loss.backward()
        grads = [p.grad.float().flatten() for p in model.parameters() if p.requires_grad and p.grad is not None]
        return torch.cat(grads), report

    table = Table(title=f"LoRA-gradient cosine to exact autograd per SDPA backend ({args.model}, "
                        f"{args.batch_size} x {args.seq_len}, {args.bits} bits, last row padded by {args.pad})")
    for col in ("backend", "policy", "cosine", "q / k / logsumexp codecs"):
        table.add_column(col)
    rows: list[dict] = []
    for backend in _backends(args.device):
        try:
            exact, _ = lora_grads(None, backend)
        except RuntimeError as e:  # no kernel of this backend for this shape/device
            table.add_row(backend.name, "-", "not available", str(e).splitlines()[0][:60])
            rows.append({"backend": backend.name, "policy": None, "cosine": None, "codecs": None})
            continue
        for policy in policies:
            got, report = lora_grads(policy, backend)
            codecs: dict = {}  # a compensated tensor has two rows: its recipe, and its stored frozen part
            for r in report.to_dict()["by_op"]:
                codecs.setdefault((r["op"], r["role"]), set()).add(r["codec"])
            roles = tuple("+".join(sorted(codecs.get(("attention", r), {"-"}))) for r in ("query", "key", "logsumexp"))
            cosine = F.cosine_similarity(got, exact, 0).item()
            table.add_row(backend.name, str(policy), f"{cosine:.4f}", " / ".join(roles))
            rows.append({"backend": backend.name, "policy": str(policy), "cosine": cosine, "codecs": roles})
    Console(width=160).print(table)
    return rows


if __name__ == "__main__":
    main()
