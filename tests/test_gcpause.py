"""NOTE [GC pause]: the collector is off from a context's entry until the step's entries are gone, and on again
after, whatever way the step ends; a collector the user turned off stays off."""

from __future__ import annotations

import gc

import pytest
import torch

import hyclora_hooks as hyclora
from hyclora_hooks import gcpause
from hyclora_hooks.models import add_lora, random_batch, tiny_llama


@pytest.fixture(scope="module")
def model_batch():
    model = add_lora(tiny_llama(attn="sdpa", dtype=torch.float32))
    return model, random_batch(model.config.vocab_size, batch=2, seq=32)


@pytest.fixture(autouse=True)
def collector_on():
    """Each test starts with the collector on and leaves it on, whatever it did."""
    gc.enable()
    yield
    held = gcpause.current()
    if held is not None:
        held.release()
    gc.enable()


def _collections():
    """A list that counts the collector's runs while it is registered (``gc.callbacks``)."""
    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    return runs, lambda: gc.callbacks.remove(count)


def test_no_collection_inside_the_forward_and_the_collector_back_on_after_the_backward(model_batch):
    model, batch = model_batch
    with hyclora.compress("intra_inter", bits=4):
        runs, stop = _collections()  # from the entry on (building the context may collect, the collector still on)
        try:
            loss = model(**batch).loss
            junk = [[i] for i in range(5 * gc.get_threshold()[0])]  # enough young objects for several collections
        finally:
            stop()
    assert not gc.isenabled() and gcpause.current() is not None
    loss.backward()
    del loss, junk
    assert runs == []
    assert gc.isenabled() and gcpause.current() is None


def test_a_graph_dropped_without_backward_ends_the_hold(model_batch):
    model, batch = model_batch
    with hyclora.compress("intra_inter", bits=4):
        loss = model(**batch).loss
    assert not gc.isenabled()
    del loss  # the graph, and with it every entry of the step
    assert gc.isenabled() and gcpause.current() is None


def test_a_forward_that_raises_ends_the_hold(model_batch):
    model, batch = model_batch
    with pytest.raises(RuntimeError, match="boom"):
        with hyclora.compress("intra_inter", bits=4):
            loss = model(**batch).loss
            raise RuntimeError("boom")
    assert gc.isenabled() and gcpause.current() is None
    del loss


def test_a_step_that_saves_nothing_ends_the_hold_at_exit(model_batch):
    model, batch = model_batch
    with torch.no_grad(), hyclora.compress("intra_inter", bits=4):
        model(**batch)
    assert gc.isenabled() and gcpause.current() is None


def test_the_next_context_ends_a_hold_still_alive(model_batch):
    model, batch = model_batch
    with hyclora.compress("intra_inter", bits=4):
        first = model(**batch).loss
    first_hold = gcpause.current()
    with hyclora.compress("intra_inter", bits=4):
        second = model(**batch).loss
    assert first_hold is not None and not first_hold.active  # ended at the second context's entry
    assert not gc.isenabled()  # the second step's hold
    second.backward()
    assert gc.isenabled()  # the first graph is alive still, its hold ended
    first.backward()
    assert gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off(model_batch):
    model, batch = model_batch
    gc.disable()
    with hyclora.compress("intra_inter", bits=4):
        loss = model(**batch).loss
    assert gcpause.current() is None
    loss.backward()
    assert not gc.isenabled()


def test_with_the_pause_disabled_the_collector_stays_on(model_batch, monkeypatch):
    model, batch = model_batch
    monkeypatch.setattr(gcpause, "ENABLED", False)
    with hyclora.compress("intra_inter", bits=4):
        loss = model(**batch).loss
        assert gc.isenabled()
    loss.backward()
    assert gc.isenabled() and gcpause.current() is None
