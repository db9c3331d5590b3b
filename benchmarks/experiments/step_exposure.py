"""Where a replayed step's time beyond its GPU work comes from (session 33): variants of one configuration, steps
alternated one by one in one process, timed as ``tools/bench_step.py`` times a step (CUDA events from a synchronised
start, around forward and backward: host work before the first kernel counts).

Variants, each taking away one suspect:

* ``as is``: ``compress()`` built inside the timed step, as bench_step does; ``as is again``: the same, run at
  another place in the alternation (does a variant's place after plain's step move it?);
* ``prebuilt``: the context object built before the step's start (its construction, the model tree's walk, off
  the clock);
* ``no exit wait``: the exit settles only the non-finite records whose events have completed (it waits for all of
  them as shipped: NOTE [Deferred non-finite check] rule 3), so the host does not wait for the forward's last
  encodes before the backward starts;
* ``no cap``: no cap on the sources pending records hold (``engine.MAX_PENDING_BYTES``; as shipped the host waits
  for the oldest record while more than 256 MiB of sources wait);
* ``all three``;
* ``cap 512 MiB``, ``cap 1 GiB``: the cap raised, not lifted;
* ``hooked bodies``: a replayed unit's body keeps the global module hooks (``units.BYPASS`` off: NOTE [Replay
  units] rule 7, added in session 33 after this script's first runs);
* ``first pack``: the step chooses to replay at its first pack, not at its first call of a unit's kind
  (``units.START_AT_UNITS`` off: rule 8, session 33); ``neither``: without rules 7 and 8;
* ``settle each pack``: every pack first settles the ready non-finite records, as before session 33 (since then
  only admissions do: NOTE [Lifetimes] rule 9);
* ``gc off``: Python's cyclic garbage collector disabled for the step, its collections run after the step's
  clock stops (session 34): a bound on what moving the forward's collections into the backward's slack could give;
  ``gc off in forward``: disabled for the forward alone, on again at the context's exit (the collections the
  forward skipped then run at the backward's first allocations); ``no gc pause``: without the library's own
  pause (NOTE [GC pause] in ``hyclora_hooks/gcpause.py``, added after the first two);
* ``long-way unit packs``: a replayed unit's packs take the long way, as before session 35 (``engine.UNIT_PACKS``
  off: NOTE [Replay units] rule 9);
* ``launcher object``: a direct launch calls Triton's launcher object, not its C function, as before session 35
  (``kernels.launch.C_LAUNCHER`` off: NOTE [Direct launch] rule 5);
* ``walk every step``: ``compress()`` checks the model's tree when it is built, as before session 36
  (``tracking.CHECK_EVERY_STEP`` on: NOTE [Unchecked walk] in ``hyclora_hooks/tracking.py``);
* ``helper unit packs``: a replayed unit's pack through the engine's helpers (``_cuda_index``, ``_param_view``,
  ``_next_record``, ``_replay_parameter_record``), as before session 37 wrote their checks out in
  ``Compressor._unit_pack`` (14% fewer Python calls a replayed forward on the dev CPU);
* ``peft bodies``: the LoRA linears in a replayed body run peft's ``forward``, as before session 38 (``units.LEAN``
  off: NOTE [Replay units] rule 10);
* ``unchecked states`` (session 39; an experiment only, never safe to ship): a unit's entry takes each module's
  state from the first time it was computed instead of reading it again (rule 1's check at no cost but the
  comparison): what the check costs a step, its objects' cold reads included, and what the body then finds warm
  that it would otherwise read cold. Put a checked variant first: a step that records under it would record other
  units (its state functions are wrapped);
* ``peft sum`` (session 40): a lean body sums its LoRA branch as peft does (``lora_sum.FUSED`` off: NOTE [LoRA
  sum] in ``hyclora_hooks/lora_sum.py``), three elementwise passes each way instead of one;
* ``view recipes`` (session 41): a kept tensor that views its source's storage (peft's ``x·A`` as ``lora_B`` saves
  it) is planned as before, a kept source plus a view recipe, not one kept entry (``engine._kept_view``); it
  replays a plan of its own (a copy of the policy object: plans are kept per policy object); ``function wrapper``
  (session 41): the fused sum's node made through ``Function.apply``'s Python wrapper (NOTE [LoRA sum] rule 4 off);
  ``eager releases`` (session 41): an entry's death counts the accountant's queue and its release at once, as before
  releases were queued too (NOTE [Deferred counting]); ``session 40``: all three (the launch trim and two inlined
  helper calls of the pack path stay).
* ``no region sums`` (session 42, with ``--checkpoint``): a checkpointed layer's forward runs peft's LoRA sum, not
  the fused one (``region_sums.ENABLED`` off: NOTE [Region sums] in ``hyclora_hooks/region_sums.py``).
* ``no branch node`` (session 44): a lean body's LoRA branch runs peft's ops, their backward autograd's fp32 one
  (``lora_branch.ENABLED`` off: NOTE [LoRA branch] in ``hyclora_hooks/lora_branch.py``); ``branch ref``: the node's
  reference backward (autograd's products, peft's bits) instead of its kernels. ``saved adapter views`` (session
  45): the node saves the views of its adapters as peft's products do, and a replay meets their records
  (``lora_branch.PASS_PARAMETERS`` off: rule 2 there). ``fp32 node input`` (session 46): the node's saved input
  decodes in fp32 as before rule 5 there (``lora_branch.NARROW_INPUT`` off); ``peft forward`` (session 46): the
  node's forward runs peft's ops (the cast, two cuBLAS products, the fused sum) instead of its kernel (rule 6).
  ``fp32 input copy`` (session 47): with the kernel, the node still makes peft's fp32 copy of its input for the
  saved input's pack (``lora_branch.SAVE_16BIT_INPUT`` off: rule 7). ``llama norms`` (session 47): a replayed
  decoder layer's RMSNorms run Llama's eight ops instead of one node each (``norm_node.ENABLED`` off: NOTE [Norm node]
  in ``hyclora_hooks/norm_node.py``); ``norm node ref``: the node with Llama's ops and autograd's chain (its bits).

``--checkpoint``: every decoder layer under HF's non-reentrant checkpointing (``tools/bench_step.py``'s
``set_checkpointing``), plain's step included: its ratios are then to plain checkpointing's step.

Session 35 found the variant right after plain's step in the alternation slower than the same code later in it
(``order/``: ~6% at 4x1024 ``@2``): compare variants that are not the first, or repeat the first as ``as is again``.

``--variants`` picks some (comma list). Per variant: the medians of step, forward and backward (events), of the
forward's host time and of the step's peak allocated bytes over those at the step's start; the step's ratio to
plain's. No variant changes what is computed: the settle and cap variants change when the host waits, the
rule 7 and 8 ones how calls are tracked (the same bits: ``tests/test_units.py``).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/step_exposure.py --shapes 1x8192 \\
        --configs intra_inter@2
"""

import dataclasses
import gc
import statistics
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks import (accounting, engine, gcpause, lora_branch, lora_sum, norm_node, region_sums,  # noqa: E402
                           tracking, units)
from hyclora_hooks.kernels import launch as klaunch  # noqa: E402
from tools.bench_step import set_checkpointing  # noqa: E402
from ab_setup import KindStandIn, ab_cases, ab_parser, ab_setup, synchronizer  # noqa: E402

CAP = engine.MAX_PENDING_BYTES
SHIPPED = dict(prebuilt=False, waits=True, cap=CAP, bypass=True, early=True, each_pack=False, gc="on", pause=True,
               unit_packs=True, c_launcher=True, walk=False, helper_unit_packs=False, lean=True, states="checked",
               fused_sum=True, kept_views=True, c_apply=True, eager_releases=False, region_sums=True,
               branch=True, branch_backward="auto", pass_params=True, narrow_input=True, branch_forward="auto",
               copy_input=False, norm_node=True, norm_backend="auto")
VARIANTS = {  # name -> what differs from SHIPPED
    "as is": {},
    "as is again": {},
    "prebuilt": dict(prebuilt=True),
    "no exit wait": dict(waits=False),
    "no cap": dict(cap=1 << 50),
    "all three": dict(prebuilt=True, waits=False, cap=1 << 50),
    "cap 512 MiB": dict(cap=512 << 20),
    "cap 1 GiB": dict(cap=1 << 30),
    "hooked bodies": dict(bypass=False),
    "first pack": dict(early=False),
    "neither": dict(bypass=False, early=False),
    "settle each pack": dict(each_pack=True),
    "gc off": dict(gc="off"),
    "gc off in forward": dict(gc="forward"),
    "no gc pause": dict(pause=False),
    "long-way unit packs": dict(unit_packs=False),
    "launcher object": dict(c_launcher=False),
    "walk every step": dict(walk=True),
    "helper unit packs": dict(helper_unit_packs=True, copy_input=True),  # (it knows no rule 7)
    "peft bodies": dict(lean=False),
    "unchecked states": dict(states="cached"),
    "peft sum": dict(fused_sum=False),
    "view recipes": dict(kept_views=False),
    "function wrapper": dict(c_apply=False),
    "eager releases": dict(eager_releases=True),
    "session 40": dict(kept_views=False, c_apply=False, eager_releases=True),
    "no region sums": dict(region_sums=False),
    "no branch node": dict(branch=False),
    "branch ref": dict(branch_backward="ref", branch_forward="ref"),
    "peft forward": dict(branch_forward="ref"),
    "saved adapter views": dict(pass_params=False),
    "fp32 node input": dict(narrow_input=False),
    "fp32 input copy": dict(copy_input=True),
    "llama norms": dict(norm_node=False),
    "norm node ref": dict(norm_backend="ref"),
}
_SETTLE, _PACK_ONE, _UNIT_PACK = engine.Compressor._settle, engine.Compressor._pack_one, engine.Compressor._unit_pack


def _settle_no_wait(self, block: bool = False) -> None:
    _SETTLE(self, False)


def _settling_pack(self, t):
    """A pack that first settles the ready non-finite records, as every pack did before session 33."""
    if self._pending.queue:
        self._settle()
    return _PACK_ONE(self, t)


def _helper_unit_pack(self, t):
    """Session 36's ``Compressor._unit_pack``: the same checks, made by the engine's helpers."""
    index = engine._cuda_index(t)
    if engine._graph_task_id() != -1 or index is not None and index != engine._cuda_device() or engine.autocast_on():
        return engine._MISS
    if type(t) is not torch.Tensor or engine._param_view(t):
        rec = self._next_record(t)
        if rec is not None and self._replay_parameter_record(rec, t) is not engine._MISS:
            self._next += 1
            self.replayed_packs += 1
            return t
    rec = self._next_record(t)
    out = engine._MISS if rec is None else self._replay_record(t, rec)
    if out is engine._MISS:
        out = self._missed(t)
    else:
        self.replayed_packs += 1
    if isinstance(out, engine.Entry):
        out.readers += 1
    return out


_KEPT_VIEW, _SUM_APPLY, _RELEASE = engine._kept_view, lora_sum.apply, accounting.Accountant.release


def _eager_release(self, token) -> None:
    """``Accountant.release`` before session 41: the queue counted, then the token released, at the entry's death."""
    self.flush()
    self._release(token)
_OWN_POLICIES: dict = {}  # (preset, bits) -> a copy of its policy: a variant that plans differently keeps its own plan


def _own_policy(preset: str, bits: int | None):
    """A policy object of the variant's own, equal to ``preset``'s: replay plans are kept per policy object, so a
    variant that changes what a recording step decides must not replay the shipped plan (or leave it its own)."""
    key = (preset, bits)
    if key not in _OWN_POLICIES:
        policy = hy.load_policy(preset).with_knobs(**({"bits": bits} if bits else {}))
        _OWN_POLICIES[key] = dataclasses.replace(policy, name=policy.name + "_variant")
    return _OWN_POLICIES[key]


_KIND_OF = units._kind_of
_STATES: dict = {}  # id(module) -> its state as first computed ("unchecked states")


def _first_state(kind, m):
    """``kind(m)`` as first computed for ``m``."""
    state = _STATES.get(id(m), _STATES)
    if state is _STATES:
        units._kind_of = _KIND_OF  # the states below it test their kinds by identity
        try:
            state = _STATES[id(m)] = kind(m)
        finally:
            units._kind_of = _cached_kind_of
    return state


def _cached_kind_of(m):
    kind = _KIND_OF(m)
    return kind if kind is None else KindStandIn(kind, partial(_first_state, kind))


def _set(v: dict) -> None:
    units._kind_of = _cached_kind_of if v["states"] == "cached" else _KIND_OF
    engine.Compressor._unit_pack = _helper_unit_pack if v["helper_unit_packs"] else _UNIT_PACK
    engine.Compressor._settle = _SETTLE if v["waits"] else _settle_no_wait
    engine.Compressor._pack_one = _settling_pack if v["each_pack"] else _PACK_ONE
    engine.MAX_PENDING_BYTES, units.BYPASS, units.START_AT_UNITS = v["cap"], v["bypass"], v["early"]
    gcpause.ENABLED, engine.UNIT_PACKS, klaunch.C_LAUNCHER = v["pause"], v["unit_packs"], v["c_launcher"]
    tracking.CHECK_EVERY_STEP, units.LEAN, lora_sum.FUSED = v["walk"], v["lean"], v["fused_sum"]
    engine._kept_view = _KEPT_VIEW if v["kept_views"] else (lambda *args: False)
    lora_sum.apply = _SUM_APPLY if v["c_apply"] else lora_sum._LoraSum.apply  # (units.py calls lora_sum.apply)
    accounting.Accountant.release = _eager_release if v["eager_releases"] else _RELEASE
    region_sums.ENABLED = v["region_sums"]
    lora_branch.ENABLED, lora_branch.BACKWARD = v["branch"], v["branch_backward"]
    lora_branch.FORWARD = v["branch_forward"]
    lora_branch.PASS_PARAMETERS = v["pass_params"]
    lora_branch.NARROW_INPUT = v["narrow_input"]
    lora_branch.SAVE_16BIT_INPUT = not v["copy_input"]
    norm_node.ENABLED = v["norm_node"]
    norm_node.FORWARD = norm_node.BACKWARD = v["norm_backend"]


def main() -> None:
    p = ab_parser(__doc__, "1x8192", "intra_inter@2", 12)
    p.add_argument("--variants", default="as is,prebuilt,no exit wait,no cap,all three")
    p.add_argument("--checkpoint", action="store_true", help="every decoder layer checkpointed (plain's step too)")
    a = p.parse_args()
    args, shapes, dev, model = ab_setup(a)
    set_checkpointing(model, a.checkpoint)
    sync = synchronizer(dev)
    cuda = dev.type == "cuda"

    def step(preset, bits, variant):
        v = dict(SHIPPED, **(VARIANTS[variant] if preset is not None else {}))
        _set(v)
        prebuilt = v["prebuilt"]
        if preset is not None and not v["kept_views"]:
            own = _own_policy(preset, bits)
            make = lambda: hy.compress(own, model=model)  # noqa: E731
        else:
            make = (lambda: hy.compress(preset, model=model, **({"bits": bits} if bits else {}))) if preset \
                else nullcontext
        model.zero_grad(set_to_none=True)
        ctx = make() if prebuilt else None
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
            start = torch.cuda.memory_allocated(dev)
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else []
        if v["gc"] != "on":
            gc.disable()
        t0 = time.perf_counter()
        if cuda:
            ev[0].record()
        with (ctx if ctx is not None else make()):
            loss = model(**batch).loss
        if v["gc"] == "forward":
            gc.enable()
        host = time.perf_counter() - t0
        if cuda:
            ev[1].record()
        loss.backward()
        if cuda:
            ev[2].record()
        sync()
        wall = time.perf_counter() - t0
        if v["gc"] == "off":  # the collections the step skipped, off the clock
            gc.enable()
            gc.collect(1)
        _set(SHIPPED)
        if cuda:
            peak = (torch.cuda.max_memory_allocated(dev) - start) / 2**30
            return (ev[0].elapsed_time(ev[2]), ev[0].elapsed_time(ev[1]), ev[1].elapsed_time(ev[2]), host * 1e3, peak)
        return (wall * 1e3, host * 1e3, (wall - host) * 1e3, host * 1e3, 0.0)

    rows = []
    for shape, batch, spec, preset, bits in ab_cases(a, args, shapes, dev):
        names = ["plain"] + a.variants.split(",")
        for _ in range(3):  # warm-up: calibration and the recording step
            for name in names:
                step(None if name == "plain" else preset, bits, name)
        got = {name: [] for name in names}
        for _ in range(a.steps):
            for name in names:
                got[name].append(step(None if name == "plain" else preset, bits, name))
        med = {name: [statistics.median(x[i] for x in got[name]) for i in range(5)] for name in names}
        for name in names:
            rows.append((shape, spec, name, *med[name], med[name][0] / med["plain"][0]))
            print(rows[-1], flush=True)
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"\n{gpu} | torch {torch.__version__} | {a.steps} steps each, variants alternated step by step; medians, ms")
    print("| shape | config | variant | step | forward | backward | forward host | peak GiB | step / plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape, spec, name, s, f, b, h, pk, r in rows:
        print(f"| {shape} | {spec} | {name} | {s:.1f} | {f:.1f} | {b:.1f} | {h:.1f} | {pk:.2f} | {r:.3f} |")


if __name__ == "__main__":
    main()
