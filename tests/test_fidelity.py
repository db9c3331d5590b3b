"""The fidelity probe (hyclora_hooks.fidelity, NOTE [Fidelity probe]) and ``hyclora probe``."""

from __future__ import annotations

import json

import pytest
import torch

from hyclora_hooks.corpus import train_eval_batches
from hyclora_hooks.errors import HycloraValueError
from hyclora_hooks.models import add_lora, tiny_llama
from hyclora_hooks.policy import Policy
from hyclora_hooks.fidelity import probe
from tools.cli import main

# everything at 2 bits, attention's q/k included without a consistent logsumexp (REFERENCE 6: ruinous)
_CRUDE = Policy.from_toml('name = "crude"\n[[rule]]\nop_class = "*"\ncodec = "quant"\nbits = 2\n')


def _batches(n):
    return train_eval_batches("pydoc", None, 256, batch=2, seq=40, n_train=n, n_eval=0)[0]


def test_probe_trains_exactly_then_measures_each_policy_on_its_own_copy():
    model = add_lora(tiny_llama(), r=4)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    res = probe(model, _batches(3 + 2 + 2), ["baseline", "intra_inter", _CRUDE], train_steps=3, calibrate=2,
                probe_batches=2)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert any(not torch.equal(start[n], trained[n]) for n in start)  # rule 1: the adapters were trained
    base, inter, crude = res
    assert base.grad_rel_l2 == [0.0, 0.0]  # keep-everything: exact autograd's gradients, bit for bit
    assert base.stored_bytes == base.activation_bytes
    assert all(c > 0.99 for c in inter.grad_cosine) and inter.ratio > 5
    assert crude.mean_cosine < inter.mean_cosine  # the probe tells a careless policy from a careful one
    # rule 2: policies ran on copies, so the trained model is as training left it and has no gradients
    assert all(torch.equal(trained[n], p) for n, p in model.named_parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.parameters())


def test_probe_names_what_is_missing():
    model = add_lora(tiny_llama(), r=4)
    with pytest.raises(HycloraValueError, match=r"probe\(batches=...\) .*got 3.*at least 8"):
        probe(model, _batches(3), ["intra"], train_steps=2, probe_batches=1)
    with pytest.raises(HycloraValueError, match=r"probe\(probe_batches=...\)"):
        probe(model, _batches(3), ["intra"], train_steps=0, calibrate=0, probe_batches=0)


def test_cli_probe_writes_json(tmp_path):
    out = tmp_path / "p.json"
    rc = main(["probe", "--model", "tiny-llama", "--data", "pydoc", "--policy", "baseline", "--policy", "intra",
               "--train-steps", "1", "--calibrate", "1", "--probe-batches", "1", "--batch-size", "2",
               "--seq-len", "24", "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert [p["policy"] for p in d["policies"]] == ["baseline", "intra"]
    assert d["policies"][0]["grad_cosine"] == [pytest.approx(1.0, abs=1e-12)]
    assert d["calibrate"] == 1 and d["train_steps"] == 1
