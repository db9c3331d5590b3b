"""How fast could a replayed forward be? The step time of hooks that only carry out decisions taken before.

docs/replay.md proposes recording the engine's per-pack decisions once and replaying them at later steps. Before
building it, this measures its floor on the real step (Llama-2-7B-shaped layers, bench_step's model):

* ``noop``: an identity ``TorchFunctionMode`` plus identity saved-tensor hooks: what tracking ops and hooking
  packs cost at all, before any decision.
* ``replay_intra@B``: the same mode, and a pack hook that looks up the decision ``compress("intra", bits=B)``
  took for this pack's index at a recorded step and carries it out: return a parameter, return a duplicate's
  earlier package, keep, or encode with the recorded codec (NOTE [Lifetimes] rule 8 views as the engine does).
  No classification, routing, accounting or checks: a lower bound on any replay of ``intra``. The encodes run
  in the model's calibration scope (the outlier channels the engine froze) with the background non-finite
  queue uncapped; without either (the first version of this script) each encode re-ranked its outlier channels
  and waited for the GPU every few encodes, and the floor read slower than the engine.
* ``intra@B``, ``intra_inter@B``: the engine as it is, for comparison in the same run.

Not a library feature: the replay here trusts the recording blindly (no check that the same op saved the same
tensor), which a real one must never do. Run on the GPU machine:

    PYTHONPATH=. python benchmarks/experiments/replay_floor.py --shapes 4x1024,1x8192 --steps 8
"""

from __future__ import annotations

import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import engine  # noqa: E402
from hyclora_hooks.codecs.calibration import calibration_scope  # noqa: E402
from hyclora_hooks.kernels import nonfinite  # noqa: E402
from tools.bench_step import Bench, Config, build_model, build_parser, make_batch, parse_shapes, resolve_device  # noqa: E402
from tools.tables import print_rows  # noqa: E402


class _Identity(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def record_decisions(bench: Bench, bits: int) -> list[tuple]:
    """One ``intra@bits`` forward with the engine's pack wrapped: per pack, what it returned."""
    plan: list[tuple] = []
    seen: dict[int, int] = {}
    orig = engine.Compressor._pack

    def spy(self, t):
        out = orig(self, t)
        if isinstance(out, engine.Entry):
            if id(out) in seen:
                plan.append(("dup", seen[id(out)]))
            else:
                seen[id(out)] = len(plan)
                plan.append(("entry", out.codec, out.site))
        else:
            plan.append(("raw",))
        return out

    engine.Compressor._pack = spy
    try:
        with hy.compress("intra", model=bench.model, bits=bits):
            loss = bench.model(**bench.batch).loss
        loss.backward()
    finally:
        engine.Compressor._pack = orig
    return plan


def replay_context(plan: list[tuple], model: torch.nn.Module) -> ExitStack:
    state = {"i": 0, "packs": []}

    def pack(t):
        i = state["i"]
        state["i"] = i + 1
        d = plan[i] if i < len(plan) else ("raw",)
        if d[0] == "raw":
            out = t
        elif d[0] == "dup":
            out = state["packs"][d[1]]
        elif d[1].lossless:
            out = ("keep", t)
        else:
            codec = d[1]
            mem, perm, shape = engine.codec_view(t, codec)
            out = ("enc", codec, codec.encode(mem, d[2]), perm, shape)
        state["packs"].append(out)
        return out

    def unpack(p):
        if isinstance(p, torch.Tensor):
            return p
        if p[0] == "keep":
            return p[1]
        _, codec, payload, perm, shape = p
        out = codec.decode(payload)
        if shape is not None:
            out = out.view(shape)
        return out if perm is None else out.permute(perm)

    stack = ExitStack()
    stack.enter_context(calibration_scope(lambda: model))  # the outlier channels the engine froze, per site
    stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, unpack))
    stack.enter_context(_Identity())
    return stack


class FloorBench(Bench):
    plans: dict[int, list[tuple]] = {}

    def context(self, cfg: Config):
        if cfg.name == "noop":
            stack = ExitStack()
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t))
            stack.enter_context(_Identity())
            return stack
        if cfg.name.startswith("replay_intra"):
            return replay_context(self.plans[cfg.bits], self.model)
        return super().context(cfg)


def main() -> None:
    # The replayed encodes run outside compress(): their non-finite checks join the module's background queue
    # (NOTE [Deferred non-finite check] rule 6), whose 256 MiB cap would make every encode wait for the GPU.
    nonfinite._BACKGROUND.max_bytes = 1 << 50
    p = build_parser()
    args = p.parse_args()
    args.shape_list = parse_shapes(args.shapes)
    device = resolve_device(args.device)
    model = build_model(args, device)
    bench = FloorBench(model, device)
    configs = [Config("plain"), Config("noop"), Config("replay_intra@2", bits=2), Config("intra@2", "intra", 2),
               Config("replay_intra@4", bits=4), Config("intra@4", "intra", 4),
               Config("intra_inter@2", "intra_inter", 2)]
    rows = []
    for batch, seq in args.shape_list:
        bench.batch = make_batch(args.vocab, batch, seq, device, args.seed)
        for b in (2, 4):  # calibrate, then record
            for _ in range(6):
                with hy.compress("intra", model=model, bits=b):
                    loss = model(**bench.batch).loss
                loss.backward()
            model.zero_grad(set_to_none=True)
            bench.plans[b] = record_decisions(bench, b)
        base = None
        for cfg in configs:
            res = bench.run(cfg, warmup=6, steps=args.steps, gpu_work_steps=args.gpu_work_steps)
            base = base or res
            act = res["act_alloc_bytes"]
            rows.append({"shape": f"{batch}x{seq}", "config": cfg.name,
                         "act GiB": act / 2**30 if isinstance(act, int) else act,
                         "step ms": res["step_s"] * 1e3, "x plain": res["step_s"] / base["step_s"],
                         "fwd ms": res["fwd_s"] * 1e3, "gpu work ms": res.get("gpu_work_s", 0.0) * 1e3})
            print(rows[-1], flush=True)
            bench.free()
    name = torch.cuda.get_device_name() if bench.cuda else "cpu"
    print_rows(f"replay floor | {name} | torch {torch.__version__} | {args.layers} layers", rows)


if __name__ == "__main__":
    main()
