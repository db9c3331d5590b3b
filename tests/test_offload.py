"""The ``offload`` codec on a machine without CUDA: refused at compress() time, with a message that says why.

Its GPU behaviour (bit-exact gradients over a long run, no leaks, views and strides) is checked by
``tools/check_offload.py`` on a CUDA machine; the tests here run wherever the suite runs.
"""

from __future__ import annotations

import pytest
import torch

import hyclora_hooks as hyclora
from hyclora_hooks import Policy, Rule, UnsupportedError, load_policy, make_codec
from hyclora_hooks.codecs.offload import Offload

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@needs_no_cuda
@pytest.mark.parametrize("spec", ["offload", Policy(name="mixed", rules=(Rule(codec="quant", op_class="norm"),
                                                                         Rule(codec="offload", op_class="linear")))])
def test_refused_without_cuda_at_compress_time(spec):
    with pytest.raises(UnsupportedError) as info:
        hyclora.compress(spec)  # refused here, before any forward runs
    msg = str(info.value)
    assert msg.startswith("hyclora_hooks: codec 'offload' needs a CUDA device (got ")
    assert "expected a machine with a CUDA GPU); " in msg and "'baseline'" in msg
    assert isinstance(info.value, RuntimeError)  # UnsupportedError is catchable as RuntimeError


def test_policy_still_loads_and_round_trips_without_cuda():
    """Only compress() refuses: the preset can be listed, printed and round-tripped on any machine."""
    pol = load_policy("offload")
    assert Policy.from_toml(pol.to_toml()).to_dict() == pol.to_dict()
    assert isinstance(pol.codecs[0], Offload) and "offload" in hyclora.preset_names()


def test_cpu_tensor_is_held_as_is():
    """On a CUDA machine a CPU tensor has nothing to move: the payload is the tensor, counted on its device."""
    codec = Offload()
    t = torch.randn(5, 7)
    assert codec.encode(t) is t and codec.decode(t) is t
    assert codec.nbytes(t) == t.untyped_storage().nbytes() and codec.host_nbytes(t) == 0


def test_bad_parameter():
    with pytest.raises(TypeError, match=r"^hyclora_hooks: offload.pin_memory must be a bool"):
        make_codec("offload", {"pin_memory": "yes"})
