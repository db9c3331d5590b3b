"""tools/bench_step.py end to end on CPU, in a subprocess, at toy widths: the JSON it writes has every field,
and the bytes of plain (the probe's independent count), baseline and intra agree with the accountant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--device", "cpu", "--layers", "1", "--shapes", "1x64", "--hidden", "256", "--intermediate", "512",
         "--heads", "4", "--kv-heads", "4", "--vocab", "512", "--steps", "2", "--warmup", "1"]
FIELDS = ("config", "shape", "tokens", "status", "step_s", "fwd_s", "bwd_s", "wall_s", "step_times_s",
          "act_alloc_bytes", "peak_alloc_bytes", "peak_over_resident_bytes", "mem_ratio", "time_ratio",
          "gpu", "torch", "triton", "transformers")


def test_bench_step_cpu_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "tools" / "bench_step.py"), *SMOKE,
           "--configs", "plain,baseline,intra,intra_inter_full_fuse", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(tmp_path.glob("*-cpu.json"))
    assert len(files) == 1, files
    doc = json.loads(files[0].read_text())
    for key in ("date", "gpu", "torch", "triton", "transformers", "peft", "model", "presets_available"):
        assert key in doc["meta"], key
    res = {r["config"]: r for r in doc["results"]}
    assert list(res)[:4] == ["plain", "baseline", "intra@2", "intra@4"]
    for name in ("plain", "baseline", "intra@2", "intra@4"):
        r = res[name]
        assert r["status"] == "ok", (name, r["status"])
        for f in FIELDS:
            assert f in r, (name, f)
        assert r["act_alloc_bytes"] == "n/a"  # no allocator figures on CPU
        assert len(r["step_times_s"]) == 2 and r["step_s"] > 0
        assert r["rounds"] == 2  # --steps 2: one timed step in each of two rounds, configurations interleaved
        # every timed step of a compressed configuration replays the recorded plan (NOTE [Replay])
        assert r["replayed_steps"] == (None if name == "plain" else 2), (name, r["replayed_steps"])
    # A preset this checkout lacks is reported, not fatal (and once it exists it must simply run).
    fuse = res["intra_inter_full_fuse@2"]["status"]
    assert fuse == "ok" if "intra_inter_full_fuse" in doc["meta"]["presets_available"] else fuse == "missing"

    plain, base = res["plain"], res["baseline"]
    saved = plain["probe_saved_bytes"]
    assert saved > 0
    # 5%: the accountant's target against the allocator (issue 6); here both count the same storages exactly.
    for name in ("baseline", "intra@2", "intra@4"):
        assert abs(res[name]["acct_activation_bytes"] - saved) <= 0.05 * saved, (name, res[name], saved)
    assert abs(base["acct_stored_bytes"] - saved) <= 0.05 * saved  # identity hooks store what plain saves
    assert base["mem_ratio"] is not None and abs(base["mem_ratio"] - 1) <= 0.05
    assert res["intra@2"]["acct_stored_bytes"] < res["intra@4"]["acct_stored_bytes"] < saved
    tail = proc.stdout.strip().splitlines()[-(len(doc["results"]) + 3):]  # the table is printed last
    assert tail[0].split()[:2] == ["shape", "config"] and tail[2].split()[:2] == ["1x64", "plain"], tail


# ---------------------------------------------------------------------------- the script's pure helpers
def _bench():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tools import bench_step

    return bench_step


def test_checkpointing_all_but_the_last_layer() -> None:
    """``uncheckpointed=1``: the last decoder layer runs outside checkpointing, so its tensors reach the compress
    context's hooks and the other layers' do not; a step's gradients equal those with every layer checkpointed;
    off clears it."""
    import torch

    import hyclora_hooks as hy

    b = _bench()
    args = b.build_parser().parse_args(["--device", "cpu", "--layers", "3", "--hidden", "64", "--intermediate",
                                        "128", "--heads", "4", "--kv-heads", "4", "--vocab", "128"])
    args.shape_list = [(1, 16)]
    model = b.build_model(args, torch.device("cpu"))
    batch = b.make_batch(args.vocab, 1, 16, torch.device("cpu"), 0)
    model.float()

    def grads(ctx):
        model.zero_grad(set_to_none=True)
        with ctx:
            loss = model(**batch).loss
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad], ctx

    b.set_checkpointing(model, True)  # the same graph as below, every layer checkpointed: the reference
    want, _ = grads(hy.compress("baseline", model=model))
    b.set_checkpointing(model, True, uncheckpointed=1)
    layers = [m for m in model.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    assert [m.gradient_checkpointing for m in layers] == [True, True, False]
    got, ctx = grads(hy.compress("baseline", model=model))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # a checkpointed layer saves its region's input alone; the last layer saves its ops' tensors
    counts = {r["layer"].rsplit(".", 1)[-1]: r["count"] for r in ctx.report().by_layer if ".layers." in r["layer"]}
    assert counts["0"] == counts["1"] == 1 and counts["2"] > 10, counts
    b.set_checkpointing(model, False)
    assert not any(m.gradient_checkpointing for m in layers)
    import pytest

    with pytest.raises(SystemExit, match="4 layers left out of checkpointing, the model has 3"):
        b.set_checkpointing(model, True, uncheckpointed=4)
    b.set_checkpointing(model, False)


def test_lora_dropout_option_gives_every_adapter_its_dropout() -> None:
    """``--lora-dropout p`` builds peft's LoRA with that dropout on each of a layer's seven projections (0: none)."""
    import torch

    bench_step = _bench()
    for p, want in ((0.1, 7), (0.0, 0)):
        args = bench_step.build_parser().parse_args(SMOKE[:-4] + ["--lora-dropout", str(p)])
        args.shape_list = [(1, 64)]
        model = bench_step.build_model(args, torch.device("cpu"))
        drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
        assert len(drops) == want * args.layers and all(m.p == p for m in drops), (p, drops)


def test_select_configs_families_and_plain_first() -> None:
    b = _bench()
    names = [c.name for c in b.select_configs("intra_inter,save_on_cpu")]
    assert names == ["plain", "save_on_cpu", "intra_inter@2", "intra_inter@4"]
    assert [c.name for c in b.select_configs("intra_inter+checkpoint@2")] == ["plain", "intra_inter+checkpoint@2"]
    assert len(b.select_configs(None)) == 14
    import pytest

    with pytest.raises(SystemExit, match="unknown --configs"):
        b.select_configs("intra@3")
    assert b.parse_shapes("4x1024, 1X8192") == [(4, 1024), (1, 8192)]
    with pytest.raises(SystemExit, match="bad shape"):
        b.parse_shapes("4-1024")


def test_steps_split_over_rounds() -> None:
    b = _bench()
    assert b.steps_per_round(12, 3) == [4, 4, 4]
    assert b.steps_per_round(10, 3) == [4, 3, 3]
    assert b.steps_per_round(5, 1) == [5]
    import pytest

    with pytest.raises(SystemExit, match="--rounds 4 is more than --steps 3"):
        b.steps_per_round(3, 4)
    with pytest.raises(SystemExit, match="must be at least 1"):
        b.steps_per_round(3, 0)
    times = {"step": [0.3, 0.1, 0.2, 0.4], "fwd": [1, 2, 3, 4], "bwd": [1, 1, 1, 1], "wall": [2, 2, 2, 2],
             "replayed": [True, True, False, True], "fwd_host": [5, 1, 3, 9], "bwd_host": [2, 4, 4, 8]}
    f = b.time_fields(times, 2, replay_counted=True)
    assert (f["step_s"], f["step_min_s"], f["step_max_s"], f["steps"], f["rounds"], f["replayed_steps"]) == \
        (0.25, 0.1, 0.4, 4, 2, 3)
    assert (f["fwd_host_s"], f["bwd_host_s"]) == (4, 4)  # medians of the host's own times
    assert b.time_fields(times, 2, replay_counted=False)["replayed_steps"] is None


def test_ratios_use_allocator_on_cuda_and_same_shape_plain() -> None:
    b = _bench()
    rows = [dict(config="plain", shape="4x1024", status="ok", act_alloc_bytes=1000, probe_saved_bytes=990, step_s=0.1),
            dict(config="plain", shape="1x8192", status="ok", act_alloc_bytes=3000, probe_saved_bytes=2990, step_s=0.3),
            dict(config="intra@2", shape="1x8192", status="ok", act_alloc_bytes=250, acct_stored_bytes=240, step_s=0.33),
            dict(config="intra@4", shape="1x8192", status="oom"),
            dict(config="save_on_cpu", shape="1x8192", status="ok", act_alloc_bytes=512, step_s=1.2, save_on_cpu=True)]
    b.add_ratios(rows)
    assert rows[4]["mem_ratio"] is None and rows[4]["mem_ratio_basis"] == "host" \
        and abs(rows[4]["time_ratio"] - 4) < 1e-12
    assert rows[0]["mem_ratio"] == 1 and rows[0]["acct_vs_alloc"] == 0.99  # plain: the probe against the allocator
    assert rows[2]["mem_ratio"] == 12 and rows[2]["acct_vs_alloc"] == 0.96 and abs(rows[2]["time_ratio"] - 1.1) < 1e-12
    assert rows[3]["mem_ratio"] is None and rows[3]["time_ratio"] is None
    assert rows[2]["gpu_work_ratio"] is None  # no GPU work measured
    assert rows[2]["best_time_ratio"] is None  # no fastest steps recorded
    rows[1]["step_min_s"], rows[2]["step_min_s"] = 0.25, 0.3  # the fastest steps: against plain's fastest
    b.add_ratios(rows)
    assert abs(rows[2]["best_time_ratio"] - 1.2) < 1e-12 and "1.20x" in b.table(rows, cuda=True)
    rows[1]["gpu_work_s"], rows[2]["gpu_work_s"] = 0.2, 0.25
    b.add_ratios(rows)
    assert rows[2]["gpu_work_ratio"] == 1.25
    table = b.table(rows, cuda=True)
    assert "gpu x" in table.splitlines()[0] and "1.25x" in table
    rows[2].update(fwd_s=0.0512, fwd_host_s=0.0497)  # the forward by events and the host's time in it, in ms
    cols = b.table(rows, cuda=True).splitlines()
    assert cols[0].index("fwd ms") < cols[0].index("host fwd ms") < cols[0].index("gpu ms")
    assert cols[4].split()[-4:-2] == ["51.2", "49.7"]  # the intra@2 row: fwd ms, host fwd ms, then gpu ms, gpu x
    assert "host fwd ms" not in b.table(rows, cuda=False)
    assert "warning" not in table
    rows[2].update(replayed_steps=7, steps=10)  # three timed steps decided afresh: said under the table
    assert "warning: 1x8192 intra@2: 7 of 10 timed steps replayed" in b.table(rows, cuda=True)


def test_host_phases_cpu_smoke() -> None:
    """tools/host_phases.py times the hooks' functions and restores them: every pack of the step is counted, and
    the engine's functions are the originals afterwards."""
    from hyclora_hooks import engine
    from tools import host_phases

    before = engine.Compressor.__dict__["_pack"]
    rows = host_phases.main(["--device", "cpu", "--config", "intra_inter@4", "--layers", "1", "--shape", "1x16",
                             "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "4",
                             "--vocab", "128", "--steps", "2", "--warmup", "1"], report=False)
    assert engine.Compressor.__dict__["_pack"] is before
    packs, ops = rows["Compressor._pack"][1], rows["OpTracker.__torch_function__"][1]
    assert packs > 0 and ops >= packs / 4
    assert rows["Quant.encode"][1] > 0  # intra_inter quantizes something at these widths


def test_bench_swiglu_cpu_smoke(tmp_path: Path) -> None:
    """tools/bench_swiglu.py --smoke: every check and row is written; 16-bit checks pass under the interpreter
    (fp32 may differ there by numpy's exp: the script's exit code then says so, and only on a GPU it must not)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRITON_INTERPRET": "1"}
    out = tmp_path / "swiglu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_swiglu.py"), "--smoke", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert len(doc["checks"]) == 12 and len(doc["rows"]) == 6
    assert all(c["silu_equal"] and c["product_equal"] for c in doc["checks"] if c["dtype"] != "float32")
    assert proc.returncode == (0 if doc["all_checks_pass"] else 1)
    assert proc.stdout.strip().splitlines()[-1].split()[2] == "fused"  # the table is printed last


def test_check_sdpa_backends_cpu_smoke() -> None:
    """tools/check_sdpa_backends.py on CPU: with lossy q/k the logsumexp is recomputed, and the gradients stay
    close to exact (the GPU run compares cuDNN, flash and efficient attention the same way)."""
    from tools import check_sdpa_backends

    rows = check_sdpa_backends.main(["--model", "tiny-llama", "--device", "cpu", "--batch-size", "2",
                                     "--seq-len", "32", "--policy", "intra_inter"])
    assert [r["backend"] for r in rows] == ["FLASH_ATTENTION"]
    (row,) = rows
    assert "quant" in row["codecs"][1] and row["codecs"][2] == "recompute", row
    assert row["cosine"] > 0.99, row


def test_profile_step_by_recipe_cpu_smoke() -> None:
    """tools/profile_step.py --by-recipe: every decode of a compressed backward, and none of its forward, is
    labelled, a recipe's time excludes the decodes nested in it (so none is negative beyond timer noise), and
    Entry.decode is the original afterwards."""
    import torch

    import hyclora_hooks as hy
    from hyclora_hooks import engine
    from tools.bench_step import build_model, build_parser, make_batch
    from tools.profile_step import RecipeTimer

    args = build_parser().parse_args(["--device", "cpu", "--layers", "1", "--hidden", "64", "--intermediate", "128",
                                      "--heads", "4", "--kv-heads", "4", "--vocab", "128"])
    args.shape_list = [(1, 16)]
    model = build_model(args, torch.device("cpu"))
    batch = make_batch(128, 1, 16, torch.device("cpu"), 0)
    before = engine.Entry.decode
    timer = RecipeTimer(cuda=False).install()
    try:
        with hy.compress("intra_inter", model=model, bits=4):
            loss = model(**batch).loss
        assert not timer.records  # the forward's decodes (LoRA parts reading x·A) are not the backward's
        loss.backward()
    finally:
        timer.restore()
    assert engine.Entry.decode is before
    rows = timer.summary()
    nested = [i for i, (*_, parent) in enumerate(timer.records) if parent >= 0]
    assert nested  # recipes decode their leaves inside their own decode
    assert any(k.startswith("recompute:attention.output") for k in rows), sorted(rows)
    assert any(k.startswith("quant:") for k in rows), sorted(rows)
    assert all(sec > -1e-3 for _, sec in rows.values()), rows
    assert sum(n for n, _ in rows.values()) == len(timer.records)


def test_profile_step_recipe_kernels_cpu_smoke(capsys) -> None:
    """tools/profile_step.py --recipe-kernels on CPU: each kind of backward decode with the ops it ran (host time),
    charged to the innermost decode (a recipe's own ops apart from its leaves' decodes), and Entry.decode is the
    original afterwards."""
    from hyclora_hooks import engine
    from tools import profile_step

    before = engine.Entry.decode
    assert profile_step.main(["--config", "intra_inter@4", "--device", "cpu", "--layers", "1", "--hidden", "64",
                              "--intermediate", "128", "--heads", "4", "--kv-heads", "4", "--vocab", "128",
                              "--shape", "1x16", "--steps", "1", "--warmup", "1", "--cprofile", "0",
                              "--recipe-kernels", "2", "--top", "3"]) == 0
    assert engine.Entry.decode is before
    out = capsys.readouterr().out
    table = out[out.index("ops (host time) by backward decode kind"):out.index("\ntop 3 ops")]
    kinds = [line.split(":")[0].strip() + ":" + line.split(":")[1] for line in table.splitlines()[1:]
             if line.startswith("  ") and not line.startswith("      ")]
    assert any(k.startswith("recompute:attention.output") for k in kinds), table
    assert any(k.startswith("quant:") for k in kinds), table
    assert "aten::" in table
