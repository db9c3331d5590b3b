"""Host time of the hooks' functions, per step: where a compressed forward spends its Python.

Same model and flags as ``tools/bench_step.py`` (``--config`` one configuration, ``--shape`` one BATCHxSEQ). Each
function below is wrapped with a ``time.perf_counter`` timer (inclusive: a function's time includes the timed
functions it calls), then, after warm-up, ``--steps`` steps run (forward, backward, synchronised on CUDA). It prints
the forward's wall time a step and, per function, milliseconds a step, calls a step and microseconds a call (forward
and backward together: decode functions run in backward).

Unlike cProfile this adds ~1 us a call and nothing to untimed code, so the forward's figure stays close to the
untimed one. At a small ``--shape`` (1x64) on CUDA the GPU has almost nothing to do and the forward's wall time is
host time; ``--device cpu`` with small widths gives the same breakdown on a machine without a GPU:

    PYTHONPATH=. python tools/host_phases.py --config intra_inter@4 --shape 4x1024          # GPU, 2 layers
    PYTHONPATH=. python tools/host_phases.py --device cpu --config intra_inter@4 --shape 1x16 --hidden 128 \\
        --intermediate 256 --heads 4 --kv-heads 4 --vocab 256
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

from tools.bench_step import all_configs, set_checkpointing, warmup_for  # noqa: E402
from tools.profile_step import build_parser as profile_parser, shape_bench  # noqa: E402


def _targets() -> list[tuple[Any, str]]:
    """(owner, attribute) of every timed function; looked up when called, so wrapping the attribute reaches it."""
    from hyclora_hooks import accounting, engine, lineage, policy, replay, sites, tracking
    from hyclora_hooks.codecs import quant as codec_quant
    from hyclora_hooks.kernels import nonfinite, quant

    C = engine.Compressor
    return [(tracking.OpTracker, "__torch_function__"), (C, "__init__"), (C, "__enter__"), (C, "__exit__"),
            (C, "_pack"), (C, "_site"), (C, "_plan"), (C, "_admit"), (C, "_recipe"), (C, "_source"), (C, "_settle"),
            (C, "_sdpa_recipe"), (C, "_log_softmax_recipe"), (C, "_remember"), (C, "_lookup_node"),
            (sites, "classify"), (policy.Policy, "route"), (accounting.Accountant, "admit"),
            (lineage, "record"), (lineage, "recipe_key"), (lineage, "leaf_entries"), (lineage.Planner, "free"),
            (lineage.Planner, "chain"), (lineage.Planner, "lora_part"), (codec_quant.Quant, "encode"),
            (quant, "quantize_triton"), (quant, "dequantize_triton"), (nonfinite.Nonfinite, "find"),
            (engine, "_unpack"), (C, "_replay_record"), (C, "_record_pack"), (C, "_decide"), (C, "_recipe_entry"),
            (C, "_account_recipe"), (C, "_bound"), (replay.Trace, "op"), (replay.Trace, "tag")]


class PhaseTimer:
    """Wraps the functions of :func:`_targets` with timers (undone by :meth:`restore`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def install(self) -> PhaseTimer:
        from hyclora_hooks import engine, sites

        for owner, attr in _targets():
            orig = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
            label = f"{getattr(owner, '__name__', str(owner)).rsplit('.', 1)[-1]}.{attr}"
            kind = type(orig) if isinstance(orig, (staticmethod, classmethod)) else None
            wrapped = self._wrap(label, orig.__func__ if kind else orig)
            setattr(owner, attr, kind(wrapped) if kind else wrapped)
            self._undo.append(lambda o=owner, a=attr, f=orig: setattr(o, a, f))
        # names imported into other modules: the engine calls classify through its own global
        engine_classify = engine.classify
        engine.classify = sites.classify
        self._undo.append(lambda: setattr(engine, "classify", engine_classify))
        return self

    def _wrap(self, label: str, fn: Callable) -> Callable:
        seconds, calls = self.seconds, self.calls

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                seconds[label] += time.perf_counter() - t0
                calls[label] += 1

        return timed

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


def main(argv: list[str] | None = None, report: bool = True) -> dict[str, tuple[float, float]]:
    """Run and print; returns ``{function: (ms a step, calls a step)}``."""
    p = profile_parser()
    p.description = __doc__.split("\n\n")[0]
    args = p.parse_args(argv)
    cfg = {c.name: c for c in all_configs()}.get(args.config)
    if cfg is None:
        raise SystemExit(f"host_phases: unknown --config {args.config!r}")
    bench = shape_bench(args)
    device = bench.device
    set_checkpointing(bench.model, cfg.checkpoint, cfg.uncheckpointed)
    timer = PhaseTimer().install()
    try:
        for _ in range(warmup_for(cfg, args.warmup)):
            loss, _ = bench.forward(cfg)
            loss.backward()
        bench.sync()
        timer.seconds.clear()
        timer.calls.clear()
        fwd = []
        for _ in range(args.steps):
            bench.model.zero_grad(set_to_none=True)
            bench.sync()
            t0 = time.perf_counter()
            loss, _ = bench.forward(cfg)
            bench.sync()
            fwd.append(time.perf_counter() - t0)
            loss.backward()
            bench.sync()
    finally:
        timer.restore()
        set_checkpointing(bench.model, False)
    n = args.steps
    rows = {k: (1e3 * s / n, timer.calls[k] / n) for k, s in timer.seconds.items()}
    if not report:
        return rows
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.config} at {args.shape}, {args.layers} layers on {where}: forward {1e3 * sorted(fwd)[n // 2]:.2f} "
          f"ms (median of {n}, timers on)")
    print(f"  {'function':<34}{'ms/step':>9}{'calls/step':>12}{'us/call':>10}")
    for label, s in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        c = timer.calls[label]
        print(f"  {label:<34}{1e3 * s / n:9.3f}{c / n:12.0f}{1e6 * s / max(c, 1):10.1f}")
    return rows


if __name__ == "__main__":
    main()
