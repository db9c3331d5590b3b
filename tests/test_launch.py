"""``kernels.launch``: when a launch may skip ``JITFunction.run`` (NOTE [Direct launch]).

A real direct launch needs a GPU (``benchmarks/experiments/launch_host_time.py`` and ``tools/bench_quant.py`` check
its bytes there). Here Triton's kernel and compiled kernel are stood in for by recorders, so that the decisions of
``launch`` itself are what is tested: which calls reuse the compiled launcher, and with which arguments."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from hyclora_hooks.kernels import launch as L  # noqa: E402


class Compiled:
    """Stands in for Triton's CompiledKernel: records what its launcher is called with."""

    packed_metadata, function = "metadata", "function"

    def __init__(self, calls: list):
        self.calls = calls

    def run(self, *a):
        self.calls.append(("direct", a))


class Kernel:
    """Stands in for a JITFunction: ``kernel[grid](*args, **meta)`` records and returns a compiled kernel."""

    arg_names = ["x", "y", "n", "BITS", "EVEN"]

    def __init__(self):
        self.calls: list = []

    def __getitem__(self, grid):
        def run(*args, **meta):
            self.calls.append(("jit", args, meta))
            return Compiled(self.calls)
        return run


@pytest.fixture
def kernel(monkeypatch):
    assert L._bind()
    monkeypatch.setattr(L, "_jit_type", Kernel)
    monkeypatch.setattr(L, "cuda_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 1234, raising=False)
    return Kernel()


def _kinds(k: Kernel) -> list[str]:
    return [c[0] for c in k.calls]


def test_second_launch_of_a_specialisation_takes_the_compiled_launcher(kernel):
    x = torch.zeros(64)
    cache: dict = {}
    meta = dict(BITS=2, EVEN=True, num_warps=4)
    for _ in range(3):
        L.launch(kernel, (5, 2), cache, (x, x, 48), meta)
    assert _kinds(kernel) == ["jit", "direct", "direct"]
    _, a = kernel.calls[1]
    # grid padded to 3-D, the device's stream, function and metadata, no launch hooks, then every parameter in
    # signature order: the runtime arguments as given, the compile-time values from meta
    assert a[:9] == (5, 2, 1, 1234, "function", "metadata", None, None, None)
    assert a[9] is x and a[10] is x and a[11:] == (48, 2, True)


@pytest.mark.parametrize("change", ["misaligned pointer", "int equal to 1", "int not a multiple of 16", "dtype"])
def test_a_different_specialisation_goes_back_through_the_jit(kernel, change):
    """What Triton compiles a separate kernel for must not reuse another's launcher."""
    x = torch.zeros(64)
    cache: dict = {}
    meta = dict(BITS=2, EVEN=True, num_warps=4)
    L.launch(kernel, (4,), cache, (x, x, 48), meta)
    L.launch(kernel, (4,), cache, (x, x, 32), meta)  # 32 is specialised as 48 is: divisible by 16
    other = {"misaligned pointer": (x, x[1:], 48), "int equal to 1": (x, x, 1),
             "int not a multiple of 16": (x, x, 47), "dtype": (x, x.half(), 48)}[change]
    L.launch(kernel, (4,), cache, other, meta)
    assert _kinds(kernel) == ["jit", "direct", "jit"]
    L.launch(kernel, (4,), cache, other, meta)  # and that specialisation is kept too
    assert _kinds(kernel) == ["jit", "direct", "jit", "direct"]


def test_launch_hooks_or_switch_off_keep_the_jit_path(kernel, monkeypatch):
    import triton

    x = torch.zeros(64)
    cache: dict = {}
    meta = dict(BITS=2, EVEN=True, num_warps=4)
    L.launch(kernel, (4,), cache, (x, x, 48), meta)

    def profiler_hook(*a):
        pass
    for name in ("launch_enter_hook", "launch_exit_hook"):  # either one set takes Triton's path
        hook = getattr(triton.knobs.runtime, name)
        if hasattr(hook, "add"):
            hook.add(profiler_hook)
            try:
                L.launch(kernel, (4,), cache, (x, x, 48), meta)
            finally:
                hook.remove(profiler_hook)
        else:
            setattr(triton.knobs.runtime, name, profiler_hook)
            try:
                L.launch(kernel, (4,), cache, (x, x, 48), meta)
            finally:
                setattr(triton.knobs.runtime, name, hook)
    L.launch(kernel, (4,), cache, (x, x, 48), meta)  # hooks gone: the compiled launcher again
    monkeypatch.setattr(L, "DIRECT", False)
    L.launch(kernel, (4,), cache, (x, x, 48), meta)
    assert _kinds(kernel) == ["jit", "jit", "jit", "direct", "jit"]


def test_arguments_the_key_cannot_cover_and_missing_compile_time_values(kernel):
    x = torch.zeros(64)
    cache: dict = {}
    for _ in range(2):
        L.launch(kernel, (4,), cache, (x, x, "n"), dict(BITS=2, EVEN=True))  # Triton cannot specialise a string
    for _ in range(2):
        L.launch(kernel, (4,), cache, (x, x, 48), dict(BITS=2))  # EVEN left to a default: not kept
    assert _kinds(kernel) == ["jit"] * 4
    assert cache == {}


def test_a_float_is_keyed_by_its_type_only(kernel):
    """Triton compiles one kernel for every fp32 value: the launcher takes the new value."""
    x = torch.zeros(64)
    cache: dict = {}
    L.launch(kernel, (4,), cache, (x, x, 1.5), dict(BITS=2, EVEN=True))
    L.launch(kernel, (4,), cache, (x, x, 2.5), dict(BITS=2, EVEN=True))
    assert _kinds(kernel) == ["jit", "direct"] and kernel.calls[1][1][11] == 2.5


class CudaLauncher:
    """Stands in for Triton 3.6's launcher object (its class name and fields): the object's call and its C function
    each record what they are called with."""

    def __init__(self, calls: list, scratch: int = 0):
        self.calls = calls
        self.launch = lambda *a: calls.append(("c", a))
        self.global_scratch_size, self.profile_scratch_size = scratch, 0
        self.launch_cooperative_grid, self.launch_pdl = False, True

    def __call__(self, *a):
        self.calls.append(("direct", a))


@pytest.mark.parametrize("scratch", [0, 64])
def test_a_launcher_without_scratch_is_called_through_its_c_function(kernel, monkeypatch, scratch):
    """NOTE [Direct launch] rule 5: the C function gets the launcher's own settings (cooperative grid, PDL, no
    scratch buffers) before the metadata; a kernel that needs scratch, or the switch off, keeps the object's call."""
    monkeypatch.setattr(Compiled, "run", property(lambda self: CudaLauncher(self.calls, scratch)))
    x = torch.zeros(64)
    cache: dict = {}
    meta = dict(BITS=2, EVEN=True, num_warps=4)
    for _ in range(2):
        L.launch(kernel, (5, 2), cache, (x, x, 48), meta)
    monkeypatch.setattr(L, "C_LAUNCHER", False)
    L.launch(kernel, (5, 2), cache, (x, x, 48), meta)
    first = "direct" if scratch else "c"
    assert _kinds(kernel) == ["jit", first, "direct"]
    a = kernel.calls[1][1]
    if not scratch:
        assert a[:13] == (5, 2, 1, 1234, "function", False, True, None, None, "metadata", None, None, None)
        assert a[13] is x and a[14] is x and a[15:] == (48, 2, True)
    assert kernel.calls[2][1][:9] == (5, 2, 1, 1234, "function", "metadata", None, None, None)
