"""``kernels.jit``: the deferred jit's once-only build guard, which every kernel module's build goes through."""

from __future__ import annotations

import pytest

from hyclora_hooks.kernels import jit


def test_once_runs_its_build_at_the_first_call_only():
    runs = []
    build = jit.once(lambda: runs.append(1))
    for _ in range(3):
        build()
    assert runs == [1]


def test_once_runs_a_build_that_raised_again():
    runs = []

    def flaky():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("triton missing")

    build = jit.once(flaky)
    with pytest.raises(RuntimeError, match="triton missing"):
        build()
    build()
    build()
    assert runs == [1, 1]


def test_a_kernel_module_binds_its_kernels_once(monkeypatch):
    """A kernel module's build binds its jitted kernels; a second call leaves them as the first bound them."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from hyclora_hooks.kernels import lora_sum

    lora_sum._build()
    kernel = lora_sum._lora_sum_kernel
    assert type(kernel).__name__ != "function"  # jitted
    lora_sum._build()
    assert lora_sum._lora_sum_kernel is kernel
