"""``hyclora``: the command line.

``hyclora report`` runs one training step of a model with LoRA under one or more policies and prints what was
saved for backward, per op class and per layer, with the totals and the device memory. With no arguments it
uses a small random Llama-architecture model on CPU under ``baseline`` and ``intra`` (no downloads).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("bits", "layernorm_outlier_ratio", "softmax_outlier_ratio", "iteration_threshold")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def _build_model(name: str, device: torch.device, lora_r: int) -> tuple[torch.nn.Module, int]:
    from hyclora_hooks.models import add_lora, tiny_gpt2, tiny_llama

    builders = {"tiny-llama": tiny_llama, "tiny-gpt2": tiny_gpt2}
    if name not in builders:
        raise SystemExit(f"hyclora: unknown --model {name!r}; choose one of {sorted(builders)}")
    model = add_lora(builders[name](), r=lora_r).to(device)
    return model, model.config.vocab_size


def cmd_report(args: argparse.Namespace) -> int:
    import hyclora_hooks as hyclora
    from hyclora_hooks.models import random_batch

    device = _device(args.device)
    policies = args.policy or ["baseline", "intra"]
    knobs = _knobs(args)
    results = []
    for spec in policies:
        model, vocab = _build_model(args.model, device, args.lora_r)
        batch = {k: v.to(device) for k, v in random_batch(vocab, args.batch_size, args.seq_len).items()}
        with hyclora.compress(spec, model=model, **knobs) as ctx:
            loss = model(**batch).loss
        report = ctx.report()
        loss.backward()
        print(report)
        print()
        results.append(report)
    base = results[0]
    print(f"{'policy':<24}{'activation':>14}{'stored':>14}{'ratio':>9}")
    from hyclora_hooks.accounting import fmt_bytes

    for r in results:
        print(f"{r.policy:<24}{fmt_bytes(r.activation_bytes):>14}{fmt_bytes(r.stored_bytes):>14}"
              f"{base.stored_bytes / r.stored_bytes if r.stored_bytes else float('inf'):>8.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([r.to_dict() for r in results], f, indent=2, default=str)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyclora", description="Compress what autograd saves for backward.")
    sub = p.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="one training step under policies: what was saved and what it cost")
    rep.add_argument("--model", default="tiny-llama", help="tiny-llama (default) or tiny-gpt2")
    rep.add_argument("--policy", action="append", help="preset name or .toml path; repeat for a side by side "
                     "(default: baseline and intra)")
    rep.add_argument("--bits", type=int, choices=(2, 4, 8))
    rep.add_argument("--layernorm-outlier-ratio", dest="layernorm_outlier_ratio", type=float)
    rep.add_argument("--softmax-outlier-ratio", dest="softmax_outlier_ratio", type=float)
    rep.add_argument("--iteration-threshold", dest="iteration_threshold", type=int)
    rep.add_argument("--batch-size", type=int, default=4)
    rep.add_argument("--seq-len", type=int, default=128)
    rep.add_argument("--lora-r", type=int, default=8)
    rep.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    rep.add_argument("--json", metavar="PATH", help="also write the reports as JSON")
    rep.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hyclora_hooks.errors import HycloraError

    try:
        return args.func(args)
    except HycloraError as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
