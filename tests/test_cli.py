"""The ``hyclora`` command: report and ab in a subprocess on tiny-llama (JSON fields, PNGs, exit codes), and
model specs (module:function, local folder, existing adapters) in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyclora_hooks.tools import cli

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--model", "tiny-llama", "--batch-size", "2", "--seq-len", "40", "--data", "pydoc"]


def hyclora(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "hyclora_hooks", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_json_and_plot(tmp_path):
    out = hyclora("report", *SMALL, "--policy", "baseline", "--policy", "intra", "--bits", "2",
                  "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"))
    assert out.returncode == 0, out.stderr
    assert "per op class" in out.stdout and "per layer" in out.stdout and "side by side" in out.stdout
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["command"] == "report" and d["batch_size"] == 2 and d["seq_len"] == 40 and d["device"] == "cpu"
    base, intra = d["policies"]
    assert (base["policy"], intra["policy"]) == ("baseline", "intra")
    assert intra["knobs"]["bits"] == 2
    for rep in (base, intra):
        for key in ("activation_bytes", "stored_bytes", "by_op", "by_layer", "by_op_class", "memory", "kept",
                    "step_time_s", "loss", "step_peak_device_bytes"):
            assert key in rep, key
        # the per op class and per layer rows add up to the totals
        assert sum(r["activation_bytes"] for r in rep["by_op_class"]) == rep["activation_bytes"]
        assert sum(r["stored_bytes"] for r in rep["by_op_class"]) == rep["stored_bytes"]
        assert sum(r["activation_bytes"] for r in rep["by_layer"]) == rep["activation_bytes"]
        assert isinstance(rep["memory"]["host_rss"], int) and rep["memory"]["host_rss"] > 0
    assert base["stored_bytes"] == base["activation_bytes"] == intra["activation_bytes"]
    assert intra["stored_bytes"] < intra["activation_bytes"] / 3  # 2-bit intra: measured 4.4x here
    assert base["loss"] == intra["loss"]  # same weights, same batch: hooks never change forward values
    w, h = _png_size(tmp_path / "r.png")
    assert w >= 800 and h >= 800


def test_ab_json_plot_and_thresholds_met(tmp_path):
    out = hyclora("ab", *SMALL, "--policy", "baseline", "--policy", "intra", "--steps", "3", "--eval-batches", "2",
                  "--min-grad-cosine", "0.9", "--max-eval-loss-delta", "0.5",
                  "--json", str(tmp_path / "ab.json"), "--plot", str(tmp_path / "ab.png"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all thresholds met" in out.stdout
    assert "step 3/3" in out.stderr  # progress lines off a terminal
    d = json.loads((tmp_path / "ab.json").read_text())
    cfg = d["config"]
    assert cfg["steps"] == 3 and cfg["model"] == "tiny-llama" and cfg["failures"] == []
    assert cfg["data"].startswith("Python docs")
    base, intra = d["policies"]
    for run in (base, intra):
        assert len(run["train_loss"]) == len(run["grad_cosine"]) == len(run["grad_rel_l2"]) == 3
        assert run["eval_steps"][0] == 0 and run["eval_steps"][-1] == 3
        assert run["peak_device_bytes"] is None  # CPU: no allocator figure
        assert run["step_time_median_s"] > 0
    assert base["time_ratio"] == 1.0 and intra["time_ratio"] > 0
    assert base["grad_rel_l2"] == [0.0, 0.0, 0.0]
    assert 0.99 < intra["min_grad_cosine"] <= 1.0
    assert intra["stored_bytes"] < base["stored_bytes"] == base["activation_bytes"]
    w, h = _png_size(tmp_path / "ab.png")
    assert w >= 1000 and h >= 600


def test_ab_exit_code_on_missed_threshold(tmp_path):
    out = hyclora("ab", *SMALL, "--policy", "baseline", "--policy", "intra", "--steps", "2", "--eval-batches", "1",
                  "--bits", "2", "--min-grad-cosine", "0.999999", "--no-progress", "--json", str(tmp_path / "ab.json"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "threshold missed: intra: gradient cosine" in out.stdout
    assert json.loads((tmp_path / "ab.json").read_text())["config"]["failures"]


@pytest.mark.parametrize("argv, needle", [
    (["report", "--model", "no-such-model"], "unknown model"),
    (["report", "--model", "tiny-llama", "--policy", "no-such-policy"], "unknown policy preset"),
    (["ab", "--model", "tiny-llama", "--lora-targets", "nope_proj"], "LoRA target modules"),
])
def test_usage_errors_exit_2_with_one_line(argv, needle, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyclora_hooks:") and needle in err and "\n" not in err


def test_report_model_from_module_function_and_existing_adapters(tmp_path, capsys):
    (tmp_path / "mymodel.py").write_text(
        "from hyclora_hooks.models import add_lora, tiny_gpt2\n"
        "def plain():\n    return tiny_gpt2(layers=1)\n"
        "def adapted():\n    return add_lora(tiny_gpt2(layers=1), r=3)\n")
    for fn, r in (("plain", 5), ("adapted", 3)):
        js = tmp_path / f"{fn}.json"
        rc = cli.main(["report", "--model", f"{tmp_path / 'mymodel.py'}:{fn}", "--lora-r", "5", "--batch-size", "1",
                       "--seq-len", "24", "--data", "pydoc", "--policy", "intra", "--json", str(js)])
        assert rc == 0
        d = json.loads(js.read_text())
        # one GPT-2 block, LoRA A (in x r) + B (r x out) on attn.c_attn 128->384, attn.c_proj 128->128,
        # mlp.c_fc 128->512 and mlp.c_proj 512->128
        assert d["trainable_params"] == r * ((128 + 384) + (128 + 128) + (128 + 512) + (512 + 128)), fn
        assert d["policies"][0]["stored_bytes"] < d["policies"][0]["activation_bytes"]
    assert "mymodel.py:adapted" in capsys.readouterr().out


def test_report_model_from_local_folder(tmp_path):
    from hyclora_hooks.models import tiny_llama
    from hyclora_hooks.zoo import load_model

    tiny_llama(layers=1).save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert type(loaded.model).__name__ == "LlamaForCausalLM" and loaded.tokenizer is None
    js = tmp_path / "r.json"
    assert cli.main(["report", "--model", str(tmp_path / "m"), "--batch-size", "1", "--seq-len", "24",
                     "--data", "random", "--json", str(js)]) == 0
    d = json.loads(js.read_text())
    from hyclora_hooks.zoo import native_bf16  # --dtype auto: bf16 for a pretrained model where bf16 is native

    assert d["dtype"] == ("bfloat16" if native_bf16(d["device"]) else "float32") and d["data"] == "random tokens"


def test_ab_default_policy_falls_back_while_intra_inter_is_missing(capsys, monkeypatch):
    from hyclora_hooks.policy import preset_names

    args = cli.build_parser().parse_args(["ab"])
    got = cli._ab_policies(args, cli._console())
    if cli.AB_DEFAULT_POLICY in preset_names():
        assert got == ["baseline", cli.AB_DEFAULT_POLICY]
    else:
        assert got == ["baseline", cli.AB_FALLBACK_POLICY]
        assert f"{cli.AB_DEFAULT_POLICY!r} is not available" in capsys.readouterr().out
    args = cli.build_parser().parse_args(["ab", "--policy", "intra"])
    assert cli._ab_policies(args, cli._console()) == ["intra"]
