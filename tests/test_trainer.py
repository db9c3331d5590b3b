"""HycloraTrainer: transformers.Trainer under a policy, with gradient accumulation and uncompressed evaluation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments

from hyclora_hooks.corpus import train_eval_batches
from hyclora_hooks.models import add_lora, tiny_llama
from hyclora_hooks.trainer import HycloraTrainer

ROOT = Path(__file__).resolve().parents[1]
STEPS, ACCUM = 3, 2


def _datasets():
    train, evals, _ = train_eval_batches("pydoc", None, 256, batch=1, seq=36, n_train=STEPS * ACCUM * 2, n_eval=4)
    row = lambda b: {k: v[0] for k, v in b.items()}  # noqa: E731 - one example per row
    return [row(b) for b in train], [row(b) for b in evals]


def _train(cls, tmp_path, **kw):
    train_ds, eval_ds = _datasets()
    model = add_lora(tiny_llama(), r=4)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2,
                             per_device_eval_batch_size=2, gradient_accumulation_steps=ACCUM, max_steps=STEPS,
                             learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=1, seed=0,
                             disable_tqdm=True, dataloader_num_workers=0)
    trainer = cls(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, **kw)
    trainer.train()
    params = torch.cat([p.detach().flatten().float() for p in model.parameters() if p.requires_grad])
    return trainer, params


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _train(Trainer, tmp_path_factory.mktemp("plain"))


def test_baseline_policy_trains_exactly_like_plain_trainer(plain, tmp_path):
    _, p_plain = plain
    trainer, p_base = _train(HycloraTrainer, tmp_path, hyclora_policy="baseline")
    assert torch.equal(p_plain, p_base)  # the hooks keep every tensor: identical updates, bit for bit
    assert trainer.hyclora_compressed_forwards == STEPS * ACCUM


def test_intra_policy_compresses_every_micro_batch_and_evaluates_exactly(plain, tmp_path):
    plain_trainer, p_plain = plain
    trainer, p_intra = _train(HycloraTrainer, tmp_path, hyclora_policy="intra", hyclora_knobs={"bits": 4})
    assert trainer.hyclora_compressed_forwards == STEPS * ACCUM  # one context per micro-batch
    # lossy backward: the weights moved differently, but only slightly (4-bit intra, 3 steps)
    rel = ((p_intra - p_plain).norm() / p_plain.norm()).item()
    assert 0 < rel < 0.05
    rep = trainer.hyclora_report()
    assert rep is not None and rep.policy == "intra" and rep.stored_bytes < rep.activation_bytes / 2
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == STEPS and all(h["hyclora/ratio"] > 2 for h in logs)
    # evaluation runs with no hooks: no compressed forward, and the same number as an uncompressed model
    before = trainer.hyclora_compressed_forwards
    got = trainer.evaluate()["eval_loss"]
    assert trainer.hyclora_compressed_forwards == before
    plain_trainer.model.load_state_dict(trainer.model.state_dict())
    assert got == plain_trainer.evaluate()["eval_loss"]
    assert not any(k.startswith("hyclora/") for k in trainer.state.log_history[-1])


def test_docs_example_runs(tmp_path):
    # docs/trainer.md's script, on a tiny model for 2 steps: the example users copy must keep working
    text = (ROOT / "docs" / "trainer.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace('MODEL = "smollm2"', 'MODEL = "tiny-llama"').replace("STEPS = 30", "STEPS = 2")
    code = code.replace('OUTPUT = "hyclora-trainer-out"', f'OUTPUT = {str(tmp_path)!r}')
    namespace: dict = {"__name__": "__main__"}
    exec(compile(code, "docs/trainer.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["trainer"].hyclora_compressed_forwards == 2 * namespace["ACCUM"]
