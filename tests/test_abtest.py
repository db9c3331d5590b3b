"""The A/B Python API (hyclora_hooks.ab): protocol (NOTE [A/B protocol] in abtest.py), figures, plots, errors."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

import hyclora_hooks as hyclora
from hyclora_hooks.abtest import grad_fidelity
from hyclora_hooks.corpus import train_eval_batches
from hyclora_hooks.models import add_lora, tiny_llama

STEPS = 3


def _data():
    # Python's docs as bytes (vocab 256): zero-install text, batch 2 x 40 (odd-ish, not a power of two)
    return train_eval_batches("pydoc", None, 256, batch=2, seq=40, n_train=STEPS, n_eval=2)


@pytest.fixture(scope="module")
def result():
    train, evals, _ = _data()
    return hyclora.ab(lambda: add_lora(tiny_llama(), r=4), train, ["baseline", "intra"], steps=STEPS,
                      eval_batches=evals, eval_every=2)


def test_baseline_gradients_equal_exact_autograd(result):
    # baseline keeps every tensor: its gradients are exact autograd's, bit for bit (cosine rounding aside)
    base = result["baseline"]
    assert base.grad_rel_l2 == [0.0] * STEPS
    assert all(abs(c - 1.0) < 1e-12 for c in base.grad_cosine)  # fp64 dot/norms of identical vectors


def test_same_start_same_data(result):
    # forward values are untouched by saved-tensor hooks, so with identical weights and batch the first
    # training loss and the eval before training are the same number for every policy (NOTE rule 1, 2)
    base, intra = result.runs
    assert base.train_loss[0] == intra.train_loss[0]
    assert base.eval_loss[0] == intra.eval_loss[0]


def test_figures_are_complete_and_sane(result):
    base, intra = result.runs
    for run in result.runs:
        assert len(run.train_loss) == len(run.grad_cosine) == len(run.step_time_s) == STEPS
        assert run.eval_steps == [0, 2, 3]  # before training, every 2 steps, after the last
        assert all(math.isfinite(x) for x in run.train_loss + run.eval_loss)
        assert run.peak_device_bytes is None and run.device == "cpu"
        assert run.step_time_median > 0
    assert base.stored_bytes == base.activation_bytes > 0
    assert intra.activation_bytes == base.activation_bytes
    assert intra.stored_bytes < intra.activation_bytes / 2  # intra at 4 bits stores well under half
    # 4-bit intra, tiny random Llama with random LoRA B, pydoc bytes: measured cosine 0.976-0.991 and relative
    # L2 0.13-0.22 over the 3 steps (with peft's B = 0 start: 0.9998 / 0.02); the floors leave room for other
    # torch builds and seeds
    assert intra.min_grad_cosine > 0.95
    assert 0 < intra.max_grad_rel_l2 < 0.35
    assert result.time_ratio(base) == 1.0
    # the runs actually trained: eval loss fell
    assert base.eval_loss[-1] < base.eval_loss[0]


def test_check_thresholds(result):
    assert result.check() == []
    assert result.check(max_eval_loss_delta=0.5, min_grad_cosine=0.9) == []
    missed = result.check(min_grad_cosine=1.5)
    assert len(missed) == 2 and all("gradient cosine" in m for m in missed)
    missed = result.check(max_eval_loss_delta=-10.0)
    assert len(missed) == 1 and missed[0].startswith("intra: final eval loss")


def test_json_and_plot(result, tmp_path):
    result.save_json(tmp_path / "ab.json")
    d = json.loads((tmp_path / "ab.json").read_text())
    assert [p["policy"] for p in d["policies"]] == ["baseline", "intra"]
    for key in ("activation_bytes", "stored_bytes", "ratio", "step_time_median_s", "time_ratio", "grad_cosine",
                "grad_rel_l2", "train_loss", "eval_loss", "eval_steps", "eval_loss_delta", "peak_device_bytes"):
        assert key in d["policies"][1], key
    assert d["config"]["steps"] == STEPS
    png = result.plot(tmp_path / "ab.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "intra" in str(result) and "baseline" in str(result)


def test_random_adapters_are_reset_to_the_first_models():
    # model_fn draws different adapters on every call; NOTE rule 1 copies the first model's into later ones
    seeds = itertools.count(1)
    train, _, _ = _data()
    res = hyclora.ab(lambda: add_lora(tiny_llama(), r=4, seed=next(seeds)), train[:1], ["baseline", "baseline"],
                     steps=1)
    a, b = res.runs
    assert (a.policy, b.policy) == ("baseline#0", "baseline#1")
    assert a.train_loss == b.train_loss and a.grad_rel_l2 == b.grad_rel_l2 == [0.0]


def test_knobs_reach_every_policy():
    train, _, _ = _data()
    make = lambda: add_lora(tiny_llama(), r=4)  # noqa: E731
    four = hyclora.ab(make, train[:1], ["intra"], steps=1)
    two = hyclora.ab(make, train[:1], [hyclora.load_policy("intra")], steps=1, knobs={"bits": 2})
    assert two["intra"].stored_bytes < four["intra"].stored_bytes
    assert two["intra"].activation_bytes == four["intra"].activation_bytes


def test_grad_fidelity_figures():
    g = torch.tensor([3.0, -4.0, 0.5])
    assert grad_fidelity(g, g) == (1.0, 0.0)
    cos, rel = grad_fidelity(2 * g, g)
    assert cos == pytest.approx(1.0, abs=1e-15) and rel == pytest.approx(1.0, abs=1e-15)
    cos, rel = grad_fidelity(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    assert cos == 0.0 and rel == pytest.approx(math.sqrt(5) / 2)
    assert grad_fidelity(torch.zeros(3), torch.zeros(3)) == (1.0, 0.0)
    assert grad_fidelity(g, torch.zeros(3)) == (0.0, float("inf"))


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"),
    ({"policies": []}, "policies"),
    ({"policies": ["no-such-preset"]}, "unknown policy preset"),
    ({"knobs": {"bits": 3}}, "bits"),
])
def test_bad_arguments_raise_user_errors(kwargs, match):
    train, _, _ = _data()
    with pytest.raises(hyclora.HycloraError, match=match):
        hyclora.ab(lambda: add_lora(tiny_llama(), r=4), train[:1], **{"policies": ["baseline"], **kwargs})


def test_a_model_without_trainable_parameters_is_refused():
    train, _, _ = _data()
    with pytest.raises(hyclora.HycloraValueError, match="no trainable parameters"):
        hyclora.ab(lambda: tiny_llama().requires_grad_(False), train[:1], ["baseline"])


def test_docs_example_runs(tmp_path):
    # docs/tools.md's pytest example, run as written: the snippet users copy must keep passing
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "tools.md").read_text(encoding="utf-8")
    code = next(c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "def test_" in c)
    ns: dict = {}
    exec(compile(code, "docs/tools.md", "exec"), ns)  # noqa: S102 - our own documentation
    (name,) = [k for k in ns if k.startswith("test_")]
    ns[name](tmp_path)
    assert (tmp_path / "ab.png").read_bytes()[:4] == b"\x89PNG"


def test_train_and_eval_batches_are_disjoint_and_seeded():
    tr, ev, name = train_eval_batches("pydoc", None, 256, batch=3, seq=50, n_train=7, n_eval=3)
    assert name.startswith("Python docs") and len(tr) == 7 and len(ev) == 3
    assert all(b["input_ids"].shape == (3, 50) and torch.equal(b["input_ids"], b["labels"]) for b in tr + ev)
    train_rows = {tuple(r.tolist()) for b in tr for r in b["input_ids"]}
    eval_rows = {tuple(r.tolist()) for b in ev for r in b["input_ids"]}
    assert len(train_rows) == 21 and len(eval_rows) == 9 and not train_rows & eval_rows
    # each row is real text from the corpus, not noise
    from hyclora_hooks.corpus import pydoc_text

    corpus = pydoc_text().encode()
    assert all(bytes(r) in corpus for r in list(train_rows)[:5] + list(eval_rows)[:5])
    # the seed reorders training batches; evaluation batches stay put
    tr2, ev2, _ = train_eval_batches("pydoc", None, 256, batch=3, seq=50, n_train=7, n_eval=3, seed=1)
    assert {tuple(r.tolist()) for b in tr2 for r in b["input_ids"]} == train_rows
    assert not torch.equal(tr2[0]["input_ids"], tr[0]["input_ids"])
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(ev, ev2))
