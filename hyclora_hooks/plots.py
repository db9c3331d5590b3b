"""PNG figures for the tools (matplotlib, Agg backend: no display needed).

Memory bars are stacked: the lower part is what the policy stores, the upper part what it saved compared with
plain autograd, so a bar's full height is the activation bytes and its dark part is what stays in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .abtest import ABResult

_MIB = 1024 * 1024


def _figure(nrows: int, ncols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure drawn by the Agg canvas directly: no pyplot state, no display, the user's backend untouched."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        from .errors import UnsupportedError

        raise UnsupportedError("hyclora_hooks: plots need matplotlib (not installed); "
                               "run: pip install matplotlib") from None
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols)


def _stacked(ax: Any, groups: Sequence[str], series: Sequence[tuple[str, Sequence[int], Sequence[int]]],
             title: str) -> None:
    """Per group, one stacked bar per series: stored (solid) under saved-by-compression (hatched)."""
    import numpy as np

    x = np.arange(len(groups))
    n = max(1, len(series))
    width = 0.8 / n
    colors = [f"C{i}" for i in range(n)]
    top = 0.0
    for i, (name, act, stored) in enumerate(series):
        act_m = np.array(act, dtype=float) / _MIB
        st_m = np.array(stored, dtype=float) / _MIB
        pos = x - 0.4 + width * (i + 0.5)
        saved = np.clip(act_m - st_m, 0, None)
        ax.bar(pos, st_m, width, color=colors[i], label=f"{name}: stored")
        ax.bar(pos, saved, width, bottom=st_m, color=colors[i], alpha=0.25, hatch="//", edgecolor=colors[i],
               label=f"{name}: saved by compression" if saved.any() else None)
        top = max(top, float((st_m + saved).max(initial=0)))
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=45 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center",
                       fontsize=8)
    ax.set_ylabel("MiB")
    ax.set_ylim(0, top * 1.12 or 1)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def by_op_class(report_dict: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Sum a report's ``by_op`` rows over roles and modules: op class -> activation/stored bytes and count."""
    out: dict[str, dict[str, int]] = {}
    for r in report_dict["by_op"]:
        row = out.setdefault(r["op"], {"count": 0, "activation_bytes": 0, "stored_bytes": 0})
        for k in row:
            row[k] += r[k]
    return out


def plot_reports(reports: Sequence[Any], path: str | Path, title: str = "") -> Path:
    """Activation vs stored bytes per op class and per layer, one stacked bar per policy."""
    dicts = [r if isinstance(r, dict) else r.to_dict() for r in reports]
    ops = sorted({op for d in dicts for op in by_op_class(d)},
                 key=lambda op: -max(by_op_class(d).get(op, {}).get("activation_bytes", 0) for d in dicts))
    layers: list[str] = []
    for d in dicts:
        for r in d["by_layer"]:
            if r["layer"] not in layers:
                layers.append(r["layer"])
    prefix = _common_prefix(layers)
    fig, (a1, a2) = _figure(2, 1, (max(8, 0.5 * len(layers) + 3), 9))
    ser_ops, ser_layers = [], []
    for d in dicts:
        oc = by_op_class(d)
        ser_ops.append((d["policy"], [oc.get(o, {}).get("activation_bytes", 0) for o in ops],
                        [oc.get(o, {}).get("stored_bytes", 0) for o in ops]))
        bl = {r["layer"]: r for r in d["by_layer"]}
        ser_layers.append((d["policy"], [bl.get(ly, {}).get("activation_bytes", 0) for ly in layers],
                           [bl.get(ly, {}).get("stored_bytes", 0) for ly in layers]))
    _stacked(a1, ops, ser_ops, "saved for backward, per op class")
    _stacked(a2, [_short_layer(ly[len(prefix):] or ly) for ly in layers], ser_layers,
             "saved for backward, per layer" + (f" (under {prefix.rstrip('.')})" if prefix else ""))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_ab(result: ABResult, path: str | Path) -> Path:
    """Training and eval loss, gradient cosine per step, and memory bars, one colour per policy."""
    fig, axes = _figure(2, 2, (13, 8))
    (ax_tr, ax_ev), (ax_cos, ax_mem) = axes
    for i, r in enumerate(result.runs):
        c = f"C{i}"
        steps = range(1, len(r.train_loss) + 1)
        ax_tr.plot(steps, r.train_loss, color=c, lw=0.8, alpha=0.35)
        ax_tr.plot(steps, _running_mean(r.train_loss), color=c, label=f"{r.policy} (running mean of 5)", lw=1.6)
        if r.eval_loss:
            ax_ev.plot(r.eval_steps, r.eval_loss, color=c, marker="o", label=r.policy)
        ax_cos.plot(steps, r.grad_cosine, color=c, label=r.policy, lw=1.2)
    ax_tr.set(title="training loss (under the policy)", xlabel="step", ylabel="loss")
    ax_ev.set(title="eval loss (uncompressed, no_grad)", xlabel="step", ylabel="loss")
    ax_cos.set(title="LoRA gradient cosine vs exact autograd", xlabel="step", ylabel="cosine")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_tr, ax_ev, ax_cos):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _policy_bars(ax_mem, result)
    cfg = result.config
    fig.suptitle(f"hyclora ab: {cfg.get('model', 'model')}, {cfg.get('steps')} steps"
                 + (f", {cfg['data']}" if cfg.get("data") else ""))
    fig.tight_layout()
    return _save(fig, path)


def _running_mean(xs: Sequence[float], window: int = 5) -> list[float]:
    """Mean of the last ``window`` values at each step (fewer at the start): batch-to-batch noise, smoothed."""
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x - (xs[i - window] if i >= window else 0.0)
        out.append(acc / min(i + 1, window))
    return out


def _policy_bars(ax: Any, result: ABResult) -> None:
    """One bar per policy: stored (solid) under what compression saved (hatched), labelled with the ratio."""
    names = [r.policy for r in result.runs]
    stored = [r.stored_bytes / _MIB for r in result.runs]
    saved = [max(0.0, (r.activation_bytes - r.stored_bytes) / _MIB) for r in result.runs]
    colors = [f"C{i}" for i in range(len(names))]
    ax.bar(names, stored, color=colors, label="stored by the policy")
    ax.bar(names, saved, bottom=stored, color=colors, alpha=0.25, hatch="//", edgecolor=colors,
           label="saved by compression")
    for i, r in enumerate(result.runs):
        ax.text(i, stored[i] + saved[i], f"{r.stored_bytes / _MIB:.1f} of {r.activation_bytes / _MIB:.1f} MiB"
                f" ({r.ratio:.2f}x)", ha="center", va="bottom", fontsize=8)
    peaks = [(r.policy, r.peak_device_bytes) for r in result.runs if r.peak_device_bytes is not None]
    ax.set(title="saved for backward per step" + (" / peak device: " + ", ".join(
        f"{n} {b / _MIB:.0f} MiB" for n, b in peaks) if peaks else ""), ylabel="MiB")
    ax.set_ylim(0, max(a + b for a, b in zip(stored, saved)) * 1.15 or 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)


def _short_layer(name: str) -> str:
    """``model.model.layers.12`` -> ``layers.12``: the last two dotted parts, enough to tell layers apart."""
    return ".".join(name.split(".")[-2:])


def _common_prefix(names: list[str]) -> str:
    from .accounting import _common_prefix as cp

    return cp(names)


def _save(fig: Any, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=110, format="png")
    return out
