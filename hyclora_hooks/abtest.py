"""A/B test of policies: the same fine-tuning run under each, measured against exact autograd.

>>> import hyclora_hooks as hyclora
>>> res = hyclora.ab(make_model, batches, policies=["baseline", "intra"], steps=20,    # doctest: +SKIP
...                  eval_batches=held_out)
>>> assert res.check(max_eval_loss_delta=0.05, min_grad_cosine=0.99) == []            # doctest: +SKIP
>>> res.plot("ab.png"); print(res)                                                    # doctest: +SKIP

NOTE [A/B protocol]
  1. Same start: ``model_fn()`` is called once per policy under the same seed; the trainable parameters of the
     first model are copied into every later one, so every policy starts from identical weights even when
     ``model_fn`` draws its adapters at random.
  2. Same data: step ``i`` uses ``batches[i % len(batches)]`` for every policy.
  3. Fidelity: at every step, the exact gradients are computed first, on the same weights and batch, with no
     hooks; then the policy's step runs and its gradients are compared (cosine and relative L2 over all
     trainable parameters, flattened in fp32/fp64). The optimizer then steps on the *policy's* gradients, so the
     loss curves show training under the policy. The RNG is re-seeded before both passes (same dropout masks).
  4. Timing covers only the policy's step (forward, backward, optimizer), synchronised on CUDA; the summary is
     the median over the steps after ``warmup``.
  5. Memory: activation and stored bytes are the accountant's figures at the end of each forward (the moment
     the graph holds everything); the summary is their maximum over steps. Peak device memory is the
     allocator's ``max_memory_allocated`` over the policy's step, reset before it (CUDA only).
  6. Evaluation runs with no hooks under ``torch.no_grad()`` in ``eval()`` mode, before the first step, every
     ``eval_every`` steps and after the last; its figure is the mean loss over ``eval_batches``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .engine import compress
from .errors import HycloraTypeError, HycloraValueError, user_error
from .policy import Policy, load_policy


@dataclass
class PolicyRun:
    """Figures of one policy's run (lists have one entry per step unless noted)."""

    policy: str
    activation_bytes: int = 0
    stored_bytes: int = 0
    host_bytes: int = 0  # what an offloading codec moved to host memory (not in stored_bytes)
    peak_device_bytes: int | None = None  # CUDA allocator peak over the policy's steps; None off CUDA
    step_time_s: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)  # the step counts at which eval_loss was measured
    eval_loss: list[float] = field(default_factory=list)
    grad_cosine: list[float] = field(default_factory=list)
    grad_rel_l2: list[float] = field(default_factory=list)
    warmup: int = 1
    memory: dict[str, Any] = field(default_factory=dict)  # Report.memory at the end of the last forward
    description: str = ""
    device: str = ""

    @property
    def ratio(self) -> float:
        return self.activation_bytes / self.stored_bytes if self.stored_bytes else float("inf")

    @property
    def step_time_median(self) -> float:
        times = self.step_time_s[self.warmup:] or self.step_time_s
        return statistics.median(times) if times else float("nan")

    @property
    def min_grad_cosine(self) -> float:
        return min(self.grad_cosine) if self.grad_cosine else float("nan")

    @property
    def max_grad_rel_l2(self) -> float:
        return max(self.grad_rel_l2) if self.grad_rel_l2 else float("nan")

    @property
    def final_eval_loss(self) -> float:
        return self.eval_loss[-1] if self.eval_loss else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ratio=self.ratio, step_time_median_s=self.step_time_median, min_grad_cosine=self.min_grad_cosine,
                 max_grad_rel_l2=self.max_grad_rel_l2, final_eval_loss=self.final_eval_loss)
        return d


@dataclass
class ABResult:
    """What :func:`ab` measured: one :class:`PolicyRun` per policy, the first being the reference."""

    runs: list[PolicyRun]
    config: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, policy: str | int) -> PolicyRun:
        if isinstance(policy, int):
            return self.runs[policy]
        for r in self.runs:
            if r.policy == policy:
                return r
        raise KeyError(policy)

    def time_ratio(self, run: PolicyRun) -> float:
        """``run``'s median step time over the first policy's."""
        return run.step_time_median / self.runs[0].step_time_median

    def eval_loss_delta(self, run: PolicyRun) -> float:
        """``run``'s final eval loss minus the first policy's (positive: worse)."""
        return run.final_eval_loss - self.runs[0].final_eval_loss

    def check(self, *, max_eval_loss_delta: float | None = None, min_grad_cosine: float | None = None) -> list[str]:
        """Missed thresholds, one line each; an empty list means every policy passed."""
        out = []
        for run in self.runs:
            if min_grad_cosine is not None and not run.min_grad_cosine >= min_grad_cosine:
                out.append(f"{run.policy}: gradient cosine fell to {run.min_grad_cosine:.6f} "
                           f"(threshold {min_grad_cosine})")
        if max_eval_loss_delta is not None:
            for run in self.runs[1:]:
                delta = self.eval_loss_delta(run)
                if not delta <= max_eval_loss_delta:  # NaN (no eval batches) fails too
                    out.append(f"{run.policy}: final eval loss {run.final_eval_loss:.4f} is {delta:+.4f} from "
                               f"{self.runs[0].policy}'s (threshold {max_eval_loss_delta:+})")
        return out

    def to_dict(self) -> dict[str, Any]:
        runs = []
        for r in self.runs:
            d = r.to_dict()
            d.update(time_ratio=self.time_ratio(r), eval_loss_delta=self.eval_loss_delta(r))
            runs.append(d)
        return {"config": self.config, "policies": runs}

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=_json_default), encoding="utf-8")

    def table(self) -> Any:
        """A rich Table of the summary (one row per policy)."""
        from rich.table import Table

        from .accounting import fmt_bytes

        steps = self.config.get("steps", len(self.runs[0].train_loss) if self.runs else 0)
        t = Table(title=f"A/B over {steps} steps (reference: {self.runs[0].policy})", title_justify="left")
        cols = ("policy", "activation", "stored", "ratio", "peak dev", "step", "vs ref", "cos min", "relL2 max",
                "train loss", "eval loss", "Δ eval")
        for c in cols:
            t.add_column(c, justify="left" if c == "policy" else "right")
        for r in self.runs:
            t.add_row(r.policy, fmt_bytes(r.activation_bytes), fmt_bytes(r.stored_bytes),
                      f"{r.ratio:.2f}x" if math.isfinite(r.ratio) else "-",
                      fmt_bytes(r.peak_device_bytes) if r.peak_device_bytes is not None else "n/a",
                      f"{r.step_time_median * 1000:.0f} ms", f"{self.time_ratio(r):.2f}x",
                      f"{r.min_grad_cosine:.4f}", f"{r.max_grad_rel_l2:.4f}",
                      f"{r.train_loss[0]:.3f} -> {r.train_loss[-1]:.3f}" if r.train_loss else "-",
                      f"{r.eval_loss[0]:.3f} -> {r.eval_loss[-1]:.3f}" if r.eval_loss else "-",
                      f"{self.eval_loss_delta(r):+.4f}" if r.eval_loss else "-")
        return t

    def __str__(self) -> str:
        import io

        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=160, color_system=None, force_terminal=False).print(self.table())
        return buf.getvalue().rstrip()

    def plot(self, path: str | Path) -> Path:
        """A PNG: training and eval loss curves, gradient cosine per step, and memory bars per policy."""
        from .plots import plot_ab

        return plot_ab(self, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (torch.dtype, torch.device, Path)):
        return str(o)
    return repr(o)


# -------------------------------------------------------------------------------------------------- runner
def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _flat_grads(params: list[tuple[str, nn.Parameter]]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().double()
                      for _, p in params])


def grad_fidelity(grad: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """Cosine and relative L2 error of ``grad`` against ``exact`` (flat vectors, computed in fp64).

    An all-zero pair counts as identical (cosine 1, error 0); a zero ``exact`` with a non-zero ``grad`` as
    orthogonal with infinite relative error.
    """
    grad, exact = grad.double(), exact.double()
    ne, ng = exact.norm().item(), grad.norm().item()
    if ne == 0.0:
        return (1.0, 0.0) if ng == 0.0 else (0.0, float("inf"))
    cos = (grad @ exact).item() / (ne * ng) if ng else 0.0
    return cos, (grad - exact).norm().item() / ne


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _loss(model: nn.Module, batch: Mapping[str, Any], loss_fn: Callable | None) -> torch.Tensor:
    out = model(**batch)
    if loss_fn is not None:
        return loss_fn(out, batch)
    loss = out.loss if hasattr(out, "loss") else out["loss"] if isinstance(out, Mapping) else out
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise user_error("the model's output has no scalar loss", type(out).__name__,
                         "an output with .loss (pass labels) or a scalar tensor",
                         "pass loss_fn=(output, batch) -> loss", cls=HycloraTypeError)
    return loss


@torch.no_grad()
def evaluate(model: nn.Module, batches: Sequence[Mapping[str, Any]], device: torch.device,
             loss_fn: Callable | None = None) -> float:
    """Mean loss over ``batches`` in eval mode, under ``no_grad`` and with no hooks (NOTE [A/B protocol] 6)."""
    was_training = model.training
    model.eval()
    try:
        losses = [float(_loss(model, _to(b, device), loss_fn)) for b in batches]
    finally:
        model.train(was_training)
    return sum(losses) / len(losses)


def ab(model_fn: Callable[[], nn.Module], batches: Sequence[Mapping[str, Any]],
       policies: Iterable[str | Path | Policy] = ("baseline", "intra"), *, steps: int | None = None,
       eval_batches: Sequence[Mapping[str, Any]] | None = None, eval_every: int | None = None,
       lr: float = 1e-3, warmup: int = 1, knobs: Mapping[str, Any] | None = None,
       device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
       optimizer_fn: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
       loss_fn: Callable | None = None, on_step: Callable[[str, int, int], None] | None = None) -> ABResult:
    """Fine-tune a fresh copy of ``model_fn()`` for ``steps`` steps under each policy; see NOTE [A/B protocol].

    ``model_fn`` returns a model whose trainable parameters are the ones to fine-tune (a peft LoRA model, for
    example). ``batches`` are keyword dicts for the model (with ``labels`` so that ``.loss`` is set, or give
    ``loss_fn(output, batch)``). ``policies`` are preset names, ``.toml`` paths or :class:`Policy` objects; the
    first is the reference for time and eval-loss ratios. ``knobs`` (``bits=2`` ...) apply to every policy.
    The optimizer is AdamW(``lr``) unless ``optimizer_fn(params)`` is given. ``device`` defaults to the model's.
    ``progress`` shows rich progress bars; ``on_step(policy, step, steps)`` is called after every step.
    """
    if not callable(model_fn):
        raise user_error("ab(model_fn=...)", type(model_fn).__name__, "a function returning a fresh model",
                         "pass e.g. lambda: add_lora(build_model())", cls=HycloraTypeError)
    batches = list(batches)
    if not batches:
        raise user_error("ab(batches=...)", 0, "at least one batch", "pass a list of batch dicts")
    steps = len(batches) if steps is None else steps
    if steps < 1:
        raise user_error("ab(steps=...)", steps, "an integer >= 1", "pass steps=N")
    pols = [load_policy(p).with_knobs(**dict(knobs or {})) for p in policies]
    if not pols:
        raise user_error("ab(policies=...)", [], "one or more policies", "pass policies=['baseline', 'intra']")
    names = [p.name for p in pols]
    if len(set(names)) != len(names):  # the same preset twice with other knobs: tell them apart
        pols = [p if names.count(p.name) == 1 else _renamed(p, f"{p.name}#{i}") for i, p in enumerate(pols)]
    eval_batches = list(eval_batches or [])
    eval_every = eval_every or max(1, steps // 5)
    warmup = min(max(0, warmup), steps - 1)

    runs: list[PolicyRun] = []
    start: dict[str, torch.Tensor] | None = None
    bar = _Progress(progress, [p.name for p in pols], steps)
    try:
        for pol in pols:
            torch.manual_seed(seed)
            model = model_fn()
            if not isinstance(model, nn.Module):
                raise user_error("ab(model_fn) returned", type(model).__name__, "an nn.Module",
                                 "make model_fn return the model", cls=HycloraTypeError)
            dev = torch.device(device) if device is not None else _model_device(model)
            model.to(dev)
            params = _trainable(model)
            if not params:
                raise user_error("the model has no trainable parameters", 0, "LoRA adapters or other trainable "
                                 "parameters", "wrap it with peft (hyclora_hooks.zoo.ensure_lora)")
            if start is None:  # NOTE [A/B protocol] rule 1
                start = {n: p.detach().clone() for n, p in params}
            else:
                _restore(params, start)
            run = _run_one(model, pol, batches, steps, eval_batches, eval_every, dev, lr, warmup, seed,
                           optimizer_fn, loss_fn, bar, on_step)
            runs.append(run)
            del model, params
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        bar.close()
    cfg = {"steps": steps, "batches": len(batches), "eval_batches": len(eval_batches), "eval_every": eval_every,
           "lr": lr, "warmup": warmup, "seed": seed, "knobs": dict(knobs or {}), "device": runs[0].device}
    return ABResult(runs, cfg)


def _renamed(p: Policy, name: str) -> Policy:
    import dataclasses

    return dataclasses.replace(p, name=name)


def _restore(params: list[tuple[str, nn.Parameter]], start: dict[str, torch.Tensor]) -> None:
    names = [n for n, _ in params]
    if names != list(start):
        raise HycloraValueError("hyclora_hooks: model_fn() returned models with different trainable parameters "
                                f"(got {len(names)} tensors, expected the first model's {len(start)}); "
                                "make model_fn build the same architecture every call")
    with torch.no_grad():
        for n, p in params:
            p.copy_(start[n])


def _run_one(model: nn.Module, pol: Policy, batches: list, steps: int, eval_batches: list, eval_every: int,
             dev: torch.device, lr: float, warmup: int, seed: int, optimizer_fn: Callable | None,
             loss_fn: Callable | None, bar: _Progress, on_step: Callable | None) -> PolicyRun:
    run = PolicyRun(policy=pol.name, warmup=warmup, description=pol.description)
    params = _trainable(model)
    plist = [p for _, p in params]
    opt = optimizer_fn(plist) if optimizer_fn is not None else torch.optim.AdamW(plist, lr=lr, weight_decay=0.0)
    model.train()
    cuda = dev.type == "cuda"
    if eval_batches:
        run.eval_steps.append(0)
        run.eval_loss.append(evaluate(model, eval_batches, dev, loss_fn))
    peak = 0
    for step in range(steps):
        batch = _to(batches[step % len(batches)], dev)
        # exact reference on the same weights (NOTE [A/B protocol] rule 3)
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(seed * 100_003 + step)
        _loss(model, batch, loss_fn).backward()
        exact = _flat_grads(params)
        opt.zero_grad(set_to_none=True)
        # the policy's step (rule 4: timed; rule 5: peak memory)
        torch.manual_seed(seed * 100_003 + step)
        if cuda:
            _sync(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        with compress(pol, model=model) as ctx:
            loss = _loss(model, batch, loss_fn)
        ctx.accountant.flush()  # the counting a read of the figures costs (NOTE [Deferred counting]): timed
        _sync(dev)
        t1 = time.perf_counter()
        report = ctx.report()  # reads NVML/psutil: kept out of the timed region
        t2 = time.perf_counter()
        loss.backward()
        _sync(dev)
        t3 = time.perf_counter()
        grads = _flat_grads(params)  # before the optimizer step, outside the timed region
        t4 = time.perf_counter()
        opt.step()
        _sync(dev)
        t5 = time.perf_counter()
        if cuda:
            peak = max(peak, torch.cuda.max_memory_allocated(dev))
        cos, rel = grad_fidelity(grads, exact)
        run.step_time_s.append((t1 - t0) + (t3 - t2) + (t5 - t4))
        run.train_loss.append(float(loss.detach()))
        run.grad_cosine.append(cos)
        run.grad_rel_l2.append(rel)
        run.activation_bytes = max(run.activation_bytes, report.activation_bytes)
        run.stored_bytes = max(run.stored_bytes, report.stored_bytes)
        run.host_bytes = max(run.host_bytes, getattr(report, "host_bytes", 0))
        run.memory = dict(report.memory)
        del loss, report, ctx, exact, grads
        done = step + 1
        if eval_batches and (done % eval_every == 0 or done == steps):
            run.eval_steps.append(done)
            run.eval_loss.append(evaluate(model, eval_batches, dev, loss_fn))
        bar.advance(pol.name, run)
        if on_step is not None:
            on_step(pol.name, done, steps)
    run.peak_device_bytes = peak if cuda else None
    run.device = str(dev)
    return run


class _Progress:
    """rich progress bars, one per policy, with the latest loss and gradient cosine; a no-op when disabled.

    Off a terminal (CI logs, pipes) a live display never renders, so a plain line is printed every tenth of the
    run instead.
    """

    def __init__(self, enabled: bool, names: list[str], steps: int):
        self._p = None
        self._console = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        console = Console(stderr=True)
        self._steps, self._every = steps, max(1, steps // 10)
        if not console.is_terminal:
            self._console = Console(stderr=True, width=160, color_system=None)
            return
        self._p = Progress(TextColumn("{task.description:<16}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                           TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                           console=console, transient=False)
        self._tasks = {n: self._p.add_task(n, total=steps, info="") for n in names}
        self._p.start()

    def advance(self, name: str, run: PolicyRun) -> None:
        if self._p is None and self._console is None:
            return
        info = f"loss {run.train_loss[-1]:.3f}  grad cos {run.grad_cosine[-1]:.4f}"
        if run.eval_loss:
            info += f"  eval {run.eval_loss[-1]:.3f}"
        if self._p is not None:
            self._p.update(self._tasks[name], advance=1, info=info)
            return
        done = len(run.train_loss)
        if done % self._every == 0 or done == self._steps:
            self._console.print(f"{name:<16} step {done}/{self._steps}  {info}  "  # type: ignore[union-attr]
                                f"({sum(run.step_time_s):.1f} s in steps)", highlight=False)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
