"""Benchmark one LoRA training step (forward + backward, no optimizer) of Llama-2-7B-shaped layers under every
way of holding activations: plain autograd, gradient checkpointing, CPU offload, and the hyclora_hooks presets
(``intra_inter`` also with checkpointing: of every decoder layer, and of every one but the last).

One process, one device, one model (built once, random weights) re-used by every configuration; for each
shape and configuration it measures:

* ``act_alloc``: ``torch.cuda.memory_allocated()`` after forward minus before, model and batch resident
  (REFERENCE 4): what the autograd graph holds on the GPU.
* ``acct_activation`` / ``acct_stored``: the accountant's bytes (``ctx.report()``) for hyclora_hooks configs;
  ``probe_saved``: for ``plain``, the distinct non-parameter storages autograd saved, counted by an
  independent identity hook in one extra, untimed forward (the reference the accountant must match).
* ``peak``: ``max_memory_allocated()`` over the step (reset before), absolute and above the resident bytes.
* ``step``: median over ``--steps`` steps after warm-up, CUDA events around forward + backward, synchronized
  after every step; also host wall time and the forward / backward split. The timed steps are split over
  ``--rounds`` rounds: each shape's configurations run one after another, then again (a short warm-up each time),
  so that a drift of the host's speed within the run (session 14 saw one configuration's steps go from 182 to
  141 ms mid-run) lands on every configuration alike. Memory is measured in the first round.
* ``fwd_host`` / ``bwd_host``: the host's own time in the forward (the ``with`` block) and until ``backward()``
  returns, medians. Where a forward's host time is about its event-timed time (``fwd``), the device waited for
  the host: that configuration's step moves with the host's speed, which differs between machines and machine
  starts (docs/benchmarks.md: "Where things stand", and session 42's "Where the remaining time goes"). The table
  shows both.

Configurations that are not presets of this checkout are reported as ``missing``; an out-of-memory step
is reported as ``oom``; any other failure as ``error: ...``; the run goes on. Results go to
``<--out>/<date>-<gpu>.json`` (rewritten after every configuration, so a cut-off run keeps what it measured)
and a table is printed last. See docs/benchmarks.md.

    PYTHONPATH=. python tools/bench_step.py                                  # the issue-6 run, H100, ~4 min
    PYTHONPATH=. python tools/bench_step.py --layers 2 --shapes 1x256 --configs intra
    PYTHONPATH=. python tools/bench_step.py --device cpu --layers 1 --shapes 1x64 --hidden 256 \\
        --intermediate 512 --heads 4 --kv-heads 4 --vocab 512 --steps 2 --configs baseline,intra   # smoke
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `python tools/bench_step.py` without PYTHONPATH=.
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

GiB = 1 << 30
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# ------------------------------------------------------------------------------------------ configurations
@dataclass(frozen=True)
class Config:
    """One way of running the step. ``preset`` set means a ``hyclora_hooks.compress`` context."""

    name: str
    preset: str | None = None
    bits: int | None = None
    checkpoint: bool = False
    save_on_cpu: bool = False
    uncheckpointed: int = 0  # with ``checkpoint``: how many of the last decoder layers are left out of it

    @property
    def family(self) -> str:  # what ``--configs`` may name to select every bit width at once
        return self.name.split("@", 1)[0]


def all_configs() -> list[Config]:
    out = [Config("plain"), Config("checkpoint", checkpoint=True), Config("save_on_cpu", save_on_cpu=True),
           Config("baseline", preset="baseline")]
    for preset in ("intra", "intra_inter", "intra_inter_full_fuse"):
        out += [Config(f"{preset}@{b}", preset=preset, bits=b) for b in (2, 4)]
    out += [Config(f"intra_inter+checkpoint@{b}", preset="intra_inter", bits=b, checkpoint=True) for b in (2, 4)]
    # every layer but the last checkpointed, the last compressed: the 40x budget has room for one layer of 8 at
    # 2 bits (docs/benchmarks.md session 23), and each layer left out saves its recompute
    out += [Config(f"intra_inter+checkpoint_but_last@{b}", preset="intra_inter", bits=b, checkpoint=True,
                   uncheckpointed=1) for b in (2, 4)]
    return out


def select_configs(spec: str | None) -> list[Config]:
    """``spec``: comma list of names (``intra@2``) or families (``intra`` = both bit widths). ``plain`` is
    always run first: every ratio is against it."""
    configs = all_configs()
    if not spec:
        return configs
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    known = {c.name for c in configs} | {c.family for c in configs}
    bad = [w for w in wanted if w not in known]
    if bad:
        raise SystemExit(f"bench_step: unknown --configs {bad}; choose from {sorted(known)}")
    chosen = [c for c in configs if c.name in wanted or c.family in wanted]
    return chosen if chosen and chosen[0].name == "plain" else [configs[0]] + chosen


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", part)
        if not m:
            raise SystemExit(f"bench_step: bad shape {part!r} in --shapes; expected BATCHxSEQ like 4x1024")
        shapes.append((int(m.group(1)), int(m.group(2))))
    return shapes


# ------------------------------------------------------------------------------------------------ model
def build_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """Random Llama-architecture causal LM of the given widths, bf16, SDPA, peft LoRA on every linear.

    Built directly on ``device`` (a 1.6B-parameter fp32 init on the CPU would take most of a minute)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hyclora_hooks.models import add_lora

    torch.manual_seed(args.seed)
    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
                      max_position_embeddings=max(4096, max(s for _, s in args.shape_list)),
                      attn_implementation="sdpa", use_cache=False)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    model = model.to(_DTYPES[args.dtype])
    # Random B (not peft's zeros) so no adapter output is all zeros: METHOD.md, never time on zeros.
    model = add_lora(model, r=args.lora_r, alpha=2 * args.lora_r, seed=args.seed, dropout=args.lora_dropout)
    model.to(device)
    model.train()
    return model


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def make_batch(vocab: int, batch: int, seq: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    return {"input_ids": ids.to(device), "labels": ids.to(device)}


def set_checkpointing(model: torch.nn.Module, on: bool, uncheckpointed: int = 0) -> None:
    """HF non-reentrant checkpointing on or off. Enabling also makes the embedding output require grad (HF does
    that for PEFT), which makes the first layer save more; off removes that hook too, so every config without
    checkpointing runs the same graph whatever ran before it. ``uncheckpointed``: the last that many decoder layers
    run without it (HF checks each layer's own ``gradient_checkpointing`` flag at every call)."""
    if on:
        from transformers.modeling_layers import GradientCheckpointingLayer

        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", None) is True
                  and isinstance(m, GradientCheckpointingLayer)]
        if uncheckpointed > len(layers):
            raise SystemExit(f"bench_step: {uncheckpointed} layers left out of checkpointing, the model has "
                             f"{len(layers)}")
        for layer in layers[len(layers) - uncheckpointed:]:
            layer.gradient_checkpointing = False
        return
    if getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()
    try:
        model.disable_input_require_grads()
    except AttributeError:  # no hook registered
        pass


# ------------------------------------------------------------------------------------------ measurement
class SavedBytesProbe:
    """Identity saved-tensor hooks that count each distinct non-parameter storage once (independent of the
    library's accountant, which is what it checks). Keys are storage addresses: a saved storage is held by the
    graph for the whole forward, so no other live storage can share its address."""

    def __init__(self, model: torch.nn.Module):
        self._params = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
        self._seen: dict[int, int] = {}
        self.packs = self.param_packs = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.packs += 1
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr in self._params:
            self.param_packs += 1
        elif ptr:
            self._seen[ptr] = s.nbytes()
        return t

    @property
    def saved_bytes(self) -> int:
        return sum(self._seen.values())

    def __enter__(self) -> SavedBytesProbe:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


class Bench:
    """The model, the batch and the device; runs and measures steps."""

    def __init__(self, model: torch.nn.Module, device: torch.device, replay: bool = True):
        self.model, self.device, self.replay = model, device, replay
        self.cuda = device.type == "cuda"
        self.batch: dict[str, torch.Tensor] = {}

    # device helpers ---------------------------------------------------------------------------------
    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def allocated(self) -> int | None:
        return torch.cuda.memory_allocated(self.device) if self.cuda else None

    def free(self) -> None:
        self.model.zero_grad(set_to_none=True)
        gc.collect()
        if self.cuda:
            self.sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    # one step ----------------------------------------------------------------------------------------
    def context(self, cfg: Config):
        if cfg.save_on_cpu:
            return torch.autograd.graph.save_on_cpu(pin_memory=self.cuda)
        if cfg.preset is not None:
            import hyclora_hooks as hyclora

            knobs = {"bits": cfg.bits} if cfg.bits is not None else {}
            return hyclora.compress(cfg.preset, model=self.model, replay=self.replay, **knobs)
        return nullcontext()

    def forward(self, cfg: Config) -> tuple[torch.Tensor, Any]:
        with self.context(cfg) as ctx:
            loss = self.model(**self.batch).loss  # the output object (and its logits) dies here
        return loss, ctx

    def timed_steps(self, cfg: Config, n: int) -> dict[str, list]:
        """``n`` steps, each synchronized; per step: event time of forward, backward, both; host wall time; the host's
        own time in the forward and until ``backward()`` returns (the device may still be working); and for a
        hyclora configuration whether the step replayed every pack (NOTE [Replay]: a step that recorded again
        decides every pack and is slower; session 14 found steps that did so every other time)."""
        fwd, bwd, step, wall, replayed, fwd_host, bwd_host = [], [], [], [], [], [], []
        for _ in range(n):
            self.model.zero_grad(set_to_none=True)
            self.sync()
            t0 = time.perf_counter()
            if self.cuda:
                ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
                ev[0].record()
            loss, ctx = self.forward(cfg)
            t1 = time.perf_counter()
            if self.cuda:
                ev[1].record()
            loss.backward()
            tb = time.perf_counter()
            if self.cuda:
                ev[2].record()
            self.sync()
            t2 = time.perf_counter()
            del loss
            if cfg.preset is not None:  # after the step: the accountant counts when read (NOTE [Deferred counting])
                replayed.append(0 < ctx.replayed_packs == ctx.accountant.packs)
            del ctx
            wall.append(t2 - t0)
            fwd_host.append(t1 - t0)
            bwd_host.append(tb - t1)
            if self.cuda:
                fwd.append(ev[0].elapsed_time(ev[1]) / 1e3)
                bwd.append(ev[1].elapsed_time(ev[2]) / 1e3)
                step.append(ev[0].elapsed_time(ev[2]) / 1e3)
            else:
                fwd.append(t1 - t0)
                bwd.append(t2 - t1)
                step.append(t2 - t0)
        return {"fwd": fwd, "bwd": bwd, "step": step, "wall": wall, "replayed": replayed, "fwd_host": fwd_host,
                "bwd_host": bwd_host}

    def gpu_work(self, cfg: Config, n: int) -> float:
        """Seconds of GPU work a step: the device time of every kernel over ``n`` steps under the torch profiler,
        counted as its table's "Self CUDA time total" (device events, no user ranges), divided by ``n``. Unlike
        the step time it does not move with the host's speed: it says what the step would take were the host
        free (docs/benchmarks.md, session 9)."""
        from torch.autograd import DeviceType

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                self.model.zero_grad(set_to_none=True)
                loss, _ = self.forward(cfg)
                loss.backward()
                del loss
            self.sync()
        us = sum(e.self_device_time_total for e in prof.events()
                 if e.device_type == DeviceType.CUDA and not e.is_user_annotation)
        return us / 1e6 / n

    def memory_step(self, cfg: Config) -> dict[str, Any]:
        """One step with the memory figures (REFERENCE 4) and, for compress configs, the accountant's."""
        out: dict[str, Any] = {}
        self.model.zero_grad(set_to_none=True)
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        before = self.allocated()
        loss, ctx = self.forward(cfg)
        self.sync()
        after = self.allocated()
        if cfg.preset is not None:
            rep = ctx.report()
            out.update(acct_activation_bytes=rep.activation_bytes, acct_stored_bytes=rep.stored_bytes,
                       packs=rep.packs, parameter_packs=rep.parameter_packs, duplicate_packs=rep.duplicate_packs,
                       replayed_packs=ctx.replayed_packs)
        del ctx
        loss.backward()
        self.sync()
        del loss
        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            out.update(resident_bytes=before, act_alloc_bytes=after - before, peak_alloc_bytes=peak,
                       peak_over_resident_bytes=peak - before,
                       reserved_bytes=torch.cuda.memory_reserved(self.device))
        else:
            out.update(resident_bytes="n/a", act_alloc_bytes="n/a", peak_alloc_bytes="n/a",
                       peak_over_resident_bytes="n/a", reserved_bytes="n/a")
        return out

    def probe_step(self) -> dict[str, Any]:
        self.model.zero_grad(set_to_none=True)
        with SavedBytesProbe(self.model) as probe:
            loss = self.model(**self.batch).loss
        loss.backward()
        del loss
        return {"probe_saved_bytes": probe.saved_bytes, "probe_packs": probe.packs,
                "probe_parameter_packs": probe.param_packs}

    # one configuration --------------------------------------------------------------------------------
    def warm(self, cfg: Config, n: int) -> None:
        for _ in range(n):
            loss, _ctx = self.forward(cfg)
            loss.backward()
            del loss, _ctx
        self.model.zero_grad(set_to_none=True)
        self.sync()

    def run(self, cfg: Config, warmup: int, steps: int, gpu_work_steps: int = 0) -> dict[str, Any]:
        """The configuration's first round: warm-up, the memory step, ``steps`` timed steps (their lists under
        ``"times"``), and the GPU work if asked."""
        with self.set_up(cfg):
            self.warm(cfg, warmup)
            res: dict[str, Any] = {"status": "ok", "warmup": warmup}
            res.update(self.memory_step(cfg))
            if cfg.name == "plain":
                res.update(self.probe_step())
            res["times"] = self.timed_steps(cfg, steps)
            if gpu_work_steps and self.cuda:
                res["gpu_work_s"] = self.gpu_work(cfg, gpu_work_steps)
            return res

    def gpu_work_round(self, cfg: Config, warmup: int, steps: int) -> float:
        """:meth:`gpu_work` after ``warmup`` steps: the run's last phase, after every timed step (a profiler
        session left CUPTI attached and the host slower in later steps: session 43,
        ``benchmarks/experiments/profiler_residue.py``)."""
        with self.set_up(cfg):
            self.warm(cfg, warmup)
            return self.gpu_work(cfg, steps)

    def more_steps(self, cfg: Config, warmup: int, steps: int) -> dict[str, list]:
        """A later round of a configuration: ``warmup`` steps (the steps of the configurations run in between
        may have left another plan to replay), then ``steps`` timed steps."""
        with self.set_up(cfg):
            self.warm(cfg, warmup)
            return self.timed_steps(cfg, steps)

    @contextmanager
    def set_up(self, cfg: Config) -> Iterator[None]:
        """The configuration's checkpointing for the block, off again after it whatever happened."""
        set_checkpointing(self.model, cfg.checkpoint, cfg.uncheckpointed)
        try:
            yield
        finally:
            set_checkpointing(self.model, False)


def time_fields(times: dict[str, list], rounds: int, replay_counted: bool) -> dict[str, Any]:
    """A record's step-time fields from its timed steps (every round's, in the order they ran)."""
    return dict(step_s=statistics.median(times["step"]), fwd_s=statistics.median(times["fwd"]),
                bwd_s=statistics.median(times["bwd"]), wall_s=statistics.median(times["wall"]),
                fwd_host_s=statistics.median(times["fwd_host"]), bwd_host_s=statistics.median(times["bwd_host"]),
                step_min_s=min(times["step"]), step_max_s=max(times["step"]), steps=len(times["step"]),
                rounds=rounds, step_times_s=[round(x, 6) for x in times["step"]],
                replayed_steps=sum(times["replayed"]) if replay_counted else None)


def steps_per_round(steps: int, rounds: int) -> list[int]:
    """``steps`` timed steps spread over ``rounds`` rounds, the first rounds taking the remainder."""
    if steps < 1 or rounds < 1:
        raise SystemExit(f"bench_step: --steps ({steps}) and --rounds ({rounds}) must be at least 1")
    if rounds > steps:
        raise SystemExit(f"bench_step: --rounds {rounds} is more than --steps {steps}: a round without a timed step")
    return [steps // rounds + (i < steps % rounds) for i in range(rounds)]


def failure(e: BaseException) -> str:
    """An exception as a record's one-line note: its type and the first line of its message."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def run_config(bench: Bench, cfg: Config, warmup: int, steps: int, presets: list[str],
               gpu_work_steps: int = 0, later_round: bool = False) -> dict[str, Any]:
    """``bench.run`` (or, for a later round, ``bench.more_steps`` as ``{"status": "ok", "times": ...}``) with the
    failures turned into a status; memory is freed whatever happened."""
    if cfg.preset is not None and cfg.preset not in presets:
        return {"status": "missing"}
    status = None
    try:
        if later_round:
            return {"status": "ok", "times": bench.more_steps(cfg, warmup, steps)}
        return bench.run(cfg, warmup, steps, gpu_work_steps)
    except _OOM:
        status = "oom"
    except Exception as e:  # noqa: BLE001 - one config's failure must not end the run
        traceback.print_exc(limit=6, file=sys.stderr)
        status = f"error: {failure(e)}"
    finally:
        bench.free()
    return {"status": status}  # the exception (and the frames holding tensors) is gone by here


# --------------------------------------------------------------------------------------------- results
def _version(mod: str) -> str:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "?"))
    except Exception as e:  # noqa: BLE001 - triton is absent on CPU-only machines
        return f"unavailable: {type(e).__name__}"


def environment(device: torch.device) -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    try:
        # "-dirty" where the tree differs from HEAD (the device machine's copy can carry an older .git)
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=_ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - the device machine's copy may have no .git
        commit = "unknown"
    env = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "gpu": gpu, "device": str(device),
           "torch": torch.__version__, "triton": _version("triton"), "transformers": _version("transformers"),
           "peft": _version("peft"), "hyclora_hooks": _version("hyclora_hooks"), "python": platform.python_version(),
           "cuda": torch.version.cuda, "git_commit": commit, "host": platform.node(),
           "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    if device.type == "cuda":
        env["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    return env


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Memory and time ratios against ``plain`` of the same shape (memory: plain / config, so bigger is
    better; time: config / plain, so smaller is better). On CPU the memory basis is the accountant's stored
    bytes against the probe's count for plain; on CUDA it is the allocator's delta. ``save_on_cpu`` gets no memory
    ratio: its device delta is the loss alone (512 bytes against plain's 8.9 GiB read 18,593,362x)."""
    plain = {r["shape"]: r for r in results if r["config"] == "plain" and r["status"] == "ok"}
    for r in results:
        p = plain.get(r["shape"])
        r["mem_ratio"] = r["time_ratio"] = r["best_time_ratio"] = r["acct_vs_alloc"] = r["gpu_work_ratio"] = None
        if r["status"] != "ok":
            continue
        if r.get("save_on_cpu"):  # the activations are in host memory: the device's delta (the loss) says nothing
            r["mem_ratio_basis"] = "host"
        elif isinstance(r.get("act_alloc_bytes"), int):
            r["mem_ratio_basis"] = "allocator"
            if p and r["act_alloc_bytes"] > 0:
                r["mem_ratio"] = p["act_alloc_bytes"] / r["act_alloc_bytes"]
            stored = r.get("acct_stored_bytes", r.get("probe_saved_bytes"))  # plain: the probe's count
            if stored is not None and r["act_alloc_bytes"] > 0:
                r["acct_vs_alloc"] = stored / r["act_alloc_bytes"]
        else:
            r["mem_ratio_basis"] = "accountant"
            if p and r.get("acct_stored_bytes"):
                r["mem_ratio"] = p["probe_saved_bytes"] / r["acct_stored_bytes"]
        if p:
            r["time_ratio"] = r["step_s"] / p["step_s"]
            if r.get("step_min_s") and p.get("step_min_s"):  # fastest steps: less of the host's drift in a run
                r["best_time_ratio"] = r["step_min_s"] / p["step_min_s"]
            if r.get("gpu_work_s") and p.get("gpu_work_s"):
                r["gpu_work_ratio"] = r["gpu_work_s"] / p["gpu_work_s"]


def output_path(out_dir: Path, env: dict[str, Any]) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", env["gpu"].lower()).strip("-") or "gpu"
    stem = f"{env['date'][:10]}-{slug}"
    path = out_dir / f"{stem}.json"
    n = 1
    while path.exists():
        n += 1
        path = out_dir / f"{stem}-{n}.json"
    return path


def write_json(path: Path, env: dict[str, Any], model_info: dict[str, Any], results: list[dict[str, Any]]) -> None:
    keep = ("gpu", "torch", "triton", "transformers")
    entries = [{**r, **{k: env[k] for k in keep}} for r in results]
    doc = {"meta": {**env, "model": model_info}, "results": entries}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _gib(x: Any) -> str:
    if not isinstance(x, (int, float)):
        return "n/a"
    return f"{x / GiB:.3f} GiB" if abs(x) >= GiB // 100 else f"{x / (1 << 20):.3f} MiB"


def _x(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}x" if isinstance(x, (int, float)) else "-"


def table(results: list[dict[str, Any]], cuda: bool) -> str:
    gpu = any(r.get("gpu_work_s") for r in results)
    head = ("shape", "config", "status", "act", "mem x", "acct", "acct/alloc", "peak", "step ms",
            "time x", "best x") + (("fwd ms", "host fwd ms") if cuda else ()) + (("gpu ms", "gpu x") if gpu else ())
    rows = [head]
    for r in results:
        ok = r["status"] == "ok"
        act = r.get("act_alloc_bytes") if cuda else r.get("probe_saved_bytes", r.get("acct_activation_bytes"))
        stored = r.get("acct_stored_bytes", r.get("probe_saved_bytes"))
        row = (r["shape"], r["config"], r["status"][:28], _gib(act) if ok else "",
               _x(r.get("mem_ratio")) if ok else "", _gib(stored) if ok and stored is not None else "",
               _x(r.get("acct_vs_alloc"), 3) if ok else "", _gib(r.get("peak_over_resident_bytes")) if ok else "",
               f"{r['step_s'] * 1e3:.1f}" if ok else "", _x(r.get("time_ratio")) if ok else "",
               _x(r.get("best_time_ratio")) if ok else "")
        if cuda:
            row += tuple(f"{r[k] * 1e3:.1f}" if ok and isinstance(r.get(k), float) else ""
                         for k in ("fwd_s", "fwd_host_s"))
        if gpu:
            work = r.get("gpu_work_s") if ok else None
            row += (f"{work * 1e3:.1f}" if work else "", _x(r.get("gpu_work_ratio")) if work else "")
        rows.append(row)
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    note = ("act = allocator delta over forward; acct = accountant's stored bytes (probe count for plain); "
            "acct/alloc = acct / act (target 0.95-1.05);\npeak = peak allocated above resident; "
            "mem x = plain act / act; time x = step / plain step (median of steps); best x = fastest step / plain's "
            "fastest;\nfwd ms = the forward by CUDA events, host fwd ms = the host's time in it (about fwd ms: the "
            "device waited for the host, and the step moves with the host's speed)"
            + ("; gpu ms = kernels' device time a step (profiler), gpu x = against plain's" if gpu else ""))
    if not cuda:
        note = ("CPU (no allocator): act = probe count (plain) or accountant's activation bytes; mem x = plain act / acct; "
                "time x = step / plain step; best x = fastest step / plain's fastest")
    warnings = [f"warning: {r['shape']} {r['config']}: {r['replayed_steps']} of {r['steps']} timed steps replayed "
                "every pack; the others decided afresh (NOTE [Replay] in hyclora_hooks/replay.py)"
                for r in results if r.get("replayed_steps") is not None and r["replayed_steps"] < r["steps"]]
    return "\n".join(lines + [note] + warnings)


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shapes", default="4x1024,1x8192", help="comma list of BATCHxSEQ (default 4x1024,1x8192)")
    p.add_argument("--seq-len", type=int, help="shorthand for --shapes <--batch>x<seq-len>")
    p.add_argument("--batch", type=int, default=1, help="batch for --seq-len (default 1)")
    p.add_argument("--configs", help="comma list of configs or families (plain is always run); default all:\n"
                   + ", ".join(c.name for c in all_configs()))
    p.add_argument("--steps", type=int, default=12, help="timed steps per config, over all rounds (median; default 12)")
    p.add_argument("--rounds", type=int,
                   help="run each shape's configurations this many times in turn, the timed steps split between\n"
                   "the rounds (default 3, or --steps if fewer): a drift of the host's speed lands on every\n"
                   "configuration alike")
    p.add_argument("--round-warmup", type=int, default=2,
                   help="warm-up steps of a configuration in each round after the first (default 2)")
    p.add_argument("--warmup", type=int, help="warm-up steps (default 3; hyclora configs max(3, "
                   "iteration_threshold + 1) so calibration is over)")
    p.add_argument("--budget-s", type=float, help="start no configuration after this many seconds (the rest are\n"
                   "reported as skipped, and the table still prints): fits a run into a time limit; the GPU\n"
                   "work of --gpu-work-steps is profiled after it, for every configuration that ran")
    p.add_argument("--out", default="benchmarks/results", help="folder for <date>-<gpu>.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True,
                   help="hyclora configs replay the previous step's decisions (NOTE [Replay]; default on)")
    p.add_argument("--gpu-work-steps", type=int, default=0,
                   help="also profile this many steps per config for the GPU work a step, after every timed\n"
                   "step of the run (CUDA; default 0: off)")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=11008)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.0,
                   help="peft's lora_dropout (default 0, the issue's set-up; recipes often use 0.05-0.1)")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="bf16")
    p.add_argument("--seed", type=int, default=0)
    return p


def resolve_device(name: str) -> torch.device:
    """``cuda`` becomes ``cuda:<current>`` (``torch.cuda.set_device`` refuses a device without an index)."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("bench_step: --device cuda but torch sees no CUDA device; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def warmup_for(cfg: Config, requested: int | None) -> int:
    if requested is not None:
        return requested
    if cfg.preset is None:
        return 3
    try:
        from hyclora_hooks import load_policy

        return max(3, load_policy(cfg.preset).knobs.iteration_threshold + 1)
    except Exception:  # noqa: BLE001 - a broken preset fails (and is reported) in the run itself
        return 3


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.shape_list = [(args.batch, args.seq_len)] if args.seq_len else parse_shapes(args.shapes)
    configs = select_configs(args.configs)
    split = steps_per_round(args.steps, min(3, args.steps) if args.rounds is None else args.rounds)
    device = resolve_device(args.device)
    if args.steps < 10:
        print(f"bench_step: --steps {args.steps} < 10: fine for a smoke run, too few for a reported median",
              file=sys.stderr)

    import hyclora_hooks

    presets = hyclora_hooks.preset_names()
    env = {**environment(device), "presets_available": presets}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = output_path(out_dir, env)

    t0 = time.perf_counter()
    model = build_model(args, device)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bench = Bench(model, device, args.replay)
    bench.free()
    model_info = {"layers": args.layers, "hidden": args.hidden, "intermediate": args.intermediate,
                  "heads": args.heads, "kv_heads": args.kv_heads, "vocab": args.vocab, "lora_r": args.lora_r,
                  "lora_dropout": args.lora_dropout,
                  "lora_targets": "q,k,v,o,gate,up,down", "dtype": args.dtype, "attention": "sdpa",
                  "params": n_params, "trainable_params": n_train, "model_bytes": bench.allocated() or "n/a",
                  "build_s": round(time.perf_counter() - t0, 2)}
    print(f"model: {args.layers} layers, hidden {args.hidden}, {n_params / 1e9:.3f}B params "
          f"({n_train / 1e6:.1f}M trainable) on {env['gpu']}; built in {model_info['build_s']} s", flush=True)

    results: list[dict[str, Any]] = []

    def budget_left() -> bool:
        return args.budget_s is None or time.perf_counter() - t0 <= args.budget_s

    def publish(rec: dict[str, Any], what: str) -> None:
        add_ratios(results)
        write_json(path, env, model_info, results)
        msg = rec["status"] if rec["status"] != "ok" else (
            f"step {rec['step_s'] * 1e3:.1f} ms, act {_gib(rec['act_alloc_bytes'])}, "
            f"mem {_x(rec['mem_ratio'])}, time {_x(rec['time_ratio'])}")
        print(f"[{time.perf_counter() - t0:6.0f}s] {rec['shape']:>7} {rec['config']:<33} {what:<9} {msg}", flush=True)

    for bsz, seq in args.shape_list:
        shape = f"{bsz}x{seq}"
        bench.batch = make_batch(args.vocab, bsz, seq, device, args.seed)
        timed: list[tuple[Config, dict[str, Any], dict[str, list]]] = []  # this shape's records that ran
        for cfg in configs:
            tc = time.perf_counter()
            if budget_left():
                res = run_config(bench, cfg, warmup_for(cfg, args.warmup), split[0], presets)
            else:
                res = {"status": "skipped: time budget"}
            times = res.pop("times", None)
            if times is not None:
                res.update(time_fields(times, 1, cfg.preset is not None and args.replay))
            leak = bench.allocated()
            rec = {"config": cfg.name, "shape": shape, "batch": bsz, "seq": seq, "tokens": bsz * seq,
                   "preset": cfg.preset, "bits": cfg.bits, "checkpoint": cfg.checkpoint,
                   "uncheckpointed": cfg.uncheckpointed, "save_on_cpu": cfg.save_on_cpu, **res,
                   "left_allocated_bytes": (leak - model_info["model_bytes"] - sum(
                       t.numel() * t.element_size() for t in bench.batch.values())) if leak is not None else "n/a",
                   "config_wall_s": round(time.perf_counter() - tc, 2)}
            results.append(rec)
            if times is not None:
                timed.append((cfg, rec, times))
            publish(rec, f"round 1/{len(split)}" if len(split) > 1 else "")
        # Later rounds, configurations interleaved: a drift of the host's speed within the run lands on every
        # configuration alike instead of on the ones that happened to run during it (docs/benchmarks.md, session 16).
        for rnd, n in enumerate(split[1:], start=2):
            for cfg, rec, times in timed:
                if not budget_left():
                    rec["rounds_note"] = "later rounds cut by --budget-s"
                    continue
                if rec.get("rounds") != rnd - 1:  # a round of it failed: its figures stay those of the rounds before
                    continue
                tc = time.perf_counter()
                res = run_config(bench, cfg, args.round_warmup, n, presets, later_round=True)
                if res["status"] != "ok":
                    rec["rounds_note"] = f"round {rnd}: {res['status']}"
                else:
                    for key, more in res["times"].items():
                        times[key] += more
                    rec.update(time_fields(times, rnd, cfg.preset is not None and args.replay))
                rec["config_wall_s"] = round(rec["config_wall_s"] + time.perf_counter() - tc, 2)
                publish(rec, f"round {rnd}/{len(split)}")
        bench.batch = {}
        bench.free()

    if args.gpu_work_steps and bench.cuda:  # last: no timed step may follow a profiler session (gpu_work_round)
        for bsz, seq in args.shape_list:
            bench.batch = make_batch(args.vocab, bsz, seq, device, args.seed)
            for cfg in configs:
                rec = next(r for r in results if r["config"] == cfg.name and r["shape"] == f"{bsz}x{seq}")
                if rec["status"] != "ok":
                    continue
                try:
                    rec["gpu_work_s"] = bench.gpu_work_round(cfg, args.round_warmup, args.gpu_work_steps)
                except Exception as e:  # noqa: BLE001 - the timed figures stand; say why this one is missing
                    rec["gpu_work_note"] = failure(e)
                finally:
                    bench.free()
                publish(rec, "gpu work")
            bench.batch = {}
            bench.free()

    print(f"\nwrote {path}  (total {time.perf_counter() - t0:.0f} s)\n")
    print(f"{env['gpu']} | torch {env['torch']} | triton {env['triton']} | transformers {env['transformers']} | "
          f"{args.layers} layers h{args.hidden} | {env['date']}")
    print(table(results, device.type == "cuda"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
