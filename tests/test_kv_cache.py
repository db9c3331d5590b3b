"""Hugging Face's KV cache inside a context (hyclora_hooks/kv_cache.py): off for training forwards, back on at
exit, kept where the call asks for it or the forward is no training one."""

import copy
import warnings

import pytest
import torch

import hyclora_hooks as hyclora
from hyclora_hooks import kv_cache
from hyclora_hooks.models import add_lora, random_batch, tiny_gpt2, tiny_llama, tiny_qwen2

from conftest import replay_step

VOCAB = 128


def _model(build=tiny_llama):
    model = add_lora(build(vocab=VOCAB))  # HF's default config: use_cache on
    model.train()
    assert model.config.use_cache is True
    return model


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2, tiny_qwen2])
@pytest.mark.parametrize("named", [True, False])
def test_a_training_forward_runs_without_the_cache_and_the_config_comes_back(named, build):
    model = _model(build)
    with hyclora.compress("intra_inter", model=model if named else None, bits=2):
        out = model(**random_batch(VOCAB, batch=2, seq=16))
        assert out.past_key_values is None and model.config.use_cache is False
    assert model.config.use_cache is True
    out.loss.backward()
    assert model(**random_batch(VOCAB, batch=2, seq=16)).past_key_values is not None  # outside: HF's default again


def test_a_model_with_the_cache_on_stores_and_replays_what_one_without_it_does():
    """With the cache, SDPA's value was the cache's copy (stored at 4 bits, not rebuilt from v_proj's term) and no
    attention was a replay unit; turned off, both models take the same path, bit for bit."""
    cached = _model()
    plain = copy.deepcopy(cached)
    plain.config.use_cache = False
    batch = random_batch(VOCAB, batch=2, seq=24)
    for step in range(3):
        g_on, ctx = replay_step(cached, "intra_inter", batch, True, seed=step, bits=2)
        g_off, ref = replay_step(plain, "intra_inter", batch, True, seed=step, bits=2)
        assert torch.equal(g_on, g_off), step
        assert ctx.report().stored_bytes == ref.report().stored_bytes, step
        assert ctx.replayed_units == ref.replayed_units, step
    assert ctx.replayed_units > 0 and ctx.replayed_packs == ctx.report().packs
    assert cached.config.use_cache is True


def test_a_call_that_asks_for_the_cache_keeps_it():
    model = _model()
    with hyclora.compress("intra_inter", model=model, bits=2):
        out = model(**random_batch(VOCAB, batch=2, seq=16), use_cache=True)
    assert out.past_key_values is not None
    out.loss.backward()
    assert model.config.use_cache is True


@pytest.mark.parametrize("how", ["eval", "no_grad"])
def test_a_forward_that_is_no_training_one_keeps_the_cache(how):
    model = _model()
    if how == "eval":
        model.eval()
    with torch.no_grad() if how == "no_grad" else torch.enable_grad():
        with hyclora.compress("intra_inter", model=model, bits=2):
            out = model(**random_batch(VOCAB, batch=2, seq=16))
            assert model.config.use_cache is True
    assert out.past_key_values is not None


def test_the_config_comes_back_when_the_forward_raises():
    model = _model()
    with pytest.raises(IndexError):
        with hyclora.compress("intra_inter", model=model, bits=2):
            model(input_ids=torch.full((2, 16), VOCAB + 5))  # a token id past the embedding table
    assert model.config.use_cache is True


def test_the_user_is_told_once(monkeypatch):
    monkeypatch.setattr(kv_cache.CacheSwitch, "_warned", False)
    model = _model()
    for step in range(2):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with hyclora.compress("baseline", model=model):
                loss = model(**random_batch(VOCAB, batch=2, seq=16)).loss
        loss.backward()
        told = [w for w in seen if "use_cache is off inside compress" in str(w.message)]
        assert len(told) == (1 if step == 0 else 0), step
