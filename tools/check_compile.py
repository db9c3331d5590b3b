"""Compile every Triton kernel a hooked training step launches for a GPU, on a machine without one.

Not a test (``tests/test_check_compile.py`` runs it small). The CPU tests run the kernels under
``TRITON_INTERPRET=1``, which never lowers them: a kernel the interpreter runs can still fail to compile for the GPU
(a type or op the backend refuses; session 47's RMSNorm kernels did) or to launch there (more shared memory than a
block may have). So:

1. **Record** (a child process under ``TRITON_INTERPRET=1``): ``tools/bench_step.py``'s model runs a few steps of
   each configuration on the CPU with every kernel path chosen (:func:`as_on_device`), and every launch is noted,
   not run (``--run-kernels`` runs it too): the kernel, its arguments' types (a tensor's dtype; an int's value, which Triton's
   specialisation reads) and its compile-time values and options. Identical launches are kept once.
2. **Compile** each for the target (default ``sm_90``, the H100's and H200's) through Triton's own launch path
   (``JITFunction.warmup``, with a driver that names the target, so specialisation and options are the device's),
   then read the cubin's registers, spills and shared memory (``cuobjdump`` from Triton's wheel).

A launch fails when it does not compile or when its shared memory exceeds what a block may have (227 KiB on sm_90).
Registers cannot overflow (ptxas is told the block's threads and spills instead); spills are reported, not failed.
Tensor arguments compile as 16-byte aligned (Triton's ``MockTensor``), the common case on the device.

    python tools/check_compile.py                  # Llama-2-7B widths, 1 layer, 1x64 tokens, bf16 (~1 min)
    python tools/check_compile.py --tiny --dtypes bf16,fp16 --arch 80

Then the table, the kernels no recorded step launched (not checked), and a count; the exit status is 1 if any
launch failed. Run it from the repository root without ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = "intra@2,intra@4,intra_inter@2,intra_inter@4,intra_inter_full_fuse@2,intra_inter+checkpoint@2"
# toy widths with a head size of 32: the smallest the RoPE kernels take (kernels/rope_part.py `fusable`)
TINY = ["--hidden", "128", "--intermediate", "256", "--heads", "4", "--kv-heads", "4", "--vocab", "128"]
SHARED_PER_BLOCK = {90: 232448, 89: 101376, 86: 101376, 80: 166912}  # bytes a block may opt in to


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma list of bench_step configs (default "
                   f"{DEFAULT_CONFIGS})")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--shape", default="1x64", help="BATCHxSEQ of the recorded steps (default 1x64)")
    p.add_argument("--tiny", action="store_true", help="toy widths instead of Llama-2-7B's (a quick check)")
    p.add_argument("--dtypes", default="bf16", help="comma list of model dtypes (default bf16; fp16 at full widths is slow\n"
                   "(over 20 min: the CPU's fp16 matmuls), so add it with --tiny)")
    p.add_argument("--lora-dropout", default="0,0.1", help="comma list of peft lora_dropout values (default 0,0.1)")
    p.add_argument("--run-kernels", action="store_true",
                   help="run each kernel under the interpreter as well as noting it (minutes at full widths)")
    p.add_argument("--arch", type=int, default=90, help="compute capability to compile for, as 90 (default)")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--record", help=argparse.SUPPRESS)  # internal: the child's output file
    return p


# -- 1. record (child process, TRITON_INTERPRET=1) ---------------------------------------------------------------


def _arg_spec(v):
    """What of a launch argument a compile depends on: a tensor's dtype, a number's value, else the value."""
    import torch

    if isinstance(v, torch.Tensor):
        return ("tensor", str(v.dtype).removeprefix("torch."))
    return v


def _launch_key(spec: tuple) -> tuple:
    """Launches that compile to the same kernel: ints by Triton's specialisation (1, divisible by 16, 64-bit)."""
    module, name, args, kwargs = spec

    def norm(v):
        if isinstance(v, int) and not isinstance(v, bool):
            return ("int", v == 1, v % 16 == 0, not -2**31 <= v < 2**31)
        return ("float",) if isinstance(v, float) else v

    return module, name, tuple(map(norm, args)), tuple(sorted(kwargs.items()))


def as_on_device(arch: int, note: Callable | None = None, run_kernels: bool = True) -> None:
    """Make the CPU (under ``TRITON_INTERPRET=1``) take the device's kernel paths with the device's compile-time
    choices: every ``use_triton`` the package imported answers yes, 16-bit dots are not made fp32 (as the
    interpreter needs), and the LoRA branch kernels' fp32 dots take ``sm_<arch>``'s precision. The steps' numbers
    are then not the device's (the interpreter's bf16 dots are wrong); their launches and host path are. ``note``:
    called with each launch (the kernel object, its arguments, its keyword arguments); ``run_kernels=False``: a
    launch is not run, its outputs keep what ``torch.empty`` gave them."""
    from triton.runtime.interpreter import InterpretedFunction

    run = InterpretedFunction.run

    def launched(self, *args, grid, warmup, **kwargs):
        if note is not None:
            note(self, args, kwargs)
        if run_kernels:
            return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = launched
    importlib.import_module("hyclora_hooks")  # with every kernel module that holds a use_triton
    from hyclora_hooks.kernels import jit
    from hyclora_hooks.kernels import lora_branch as branch_kernels

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("hyclora_hooks") and callable(getattr(mod, "use_triton", None)):
            mod.use_triton = lambda t: True
    jit.dots_in_fp32 = lambda: False
    branch_kernels._precision = lambda dev: branch_kernels.dot_precision(divmod(arch, 10))


def record(a: argparse.Namespace) -> dict:
    """Run the configurations' steps under the interpreter; {launch key: (module, kernel, args, kwargs)}.

    Without ``--run-kernels`` a launch is noted and not run: its outputs keep whatever ``torch.empty`` gave them, so
    the steps' numbers are meaningless and the record takes seconds instead of minutes at full widths. What is
    launched depends on shapes, dtypes and settings, not on values, with one exception added by hand: a kernel
    with a ``CHECKED`` variant (re-run where a non-finite value turned up, NOTE [Deferred non-finite check]) is
    noted with it too."""
    sys.path.insert(0, str(ROOT))
    import torch

    from tools.bench_step import Bench, all_configs, build_model, make_batch, parse_shapes, set_checkpointing
    from tools.bench_step import build_parser as bench_parser
    from tools.bench_step import warmup_for

    configs = {c.name: c for c in all_configs()}
    unknown = [n for n in a.configs.split(",") if n not in configs]
    if unknown:
        raise SystemExit(f"check_compile: unknown config(s) {unknown}; one of {sorted(configs)}")
    launches: dict = {}

    def noted(kernel, args, kwargs):
        spec = (kernel.fn.__module__, kernel.fn.__name__, tuple(map(_arg_spec, args)),
                {k: _arg_spec(v) for k, v in kwargs.items()})
        launches.setdefault(_launch_key(spec), spec)
        if kwargs.get("CHECKED") is False:
            checked = (*spec[:3], {**spec[3], "CHECKED": True})
            launches.setdefault(_launch_key(checked), checked)

    as_on_device(a.arch, noted, a.run_kernels)
    cpu = torch.device("cpu")
    for dtype in a.dtypes.split(","):
        for dropout in a.lora_dropout.split(","):
            args = bench_parser().parse_args(["--device", "cpu", "--layers", str(a.layers), "--dtype", dtype,
                                              "--lora-dropout", dropout] + (TINY if a.tiny else []))
            (bsz, seq), = args.shape_list = parse_shapes(a.shape)
            torch.manual_seed(0)
            bench = Bench(build_model(args, cpu), cpu)
            bench.batch = make_batch(args.vocab, bsz, seq, cpu, 0)
            for cfg in (configs[n] for n in a.configs.split(",")):
                set_checkpointing(bench.model, cfg.checkpoint, cfg.uncheckpointed)
                for _ in range(warmup_for(cfg, None) + 1):  # the recording step, calibration, a replayed step
                    bench.model.zero_grad(set_to_none=True)
                    loss, _ = bench.forward(cfg)
                    loss.backward()
    return launches


# -- 2. compile (this process, TRITON_INTERPRET=0) ---------------------------------------------------------------


class _TargetDriver:
    """The little of Triton's driver that compiling needs, for a GPU that is not here."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target


def _kernel(module: str, name: str):
    """The ``JITFunction`` ``name`` of kernel module ``module``, its module built (kernels/jit.py)."""
    from triton.runtime.jit import JITFunction

    mod = importlib.import_module(module)
    mod._build()
    kernel = getattr(mod, name)
    if not isinstance(kernel, JITFunction):  # built under the interpreter: warmup would compile nothing
        raise RuntimeError(f"{module}.{name} is a {type(kernel).__name__}, not a JITFunction: compile in a process "
                           "that has not run kernels under TRITON_INTERPRET=1")
    return kernel


def _resources(cubin: bytes) -> dict:
    """Registers, stack (spills) and local memory of a cubin's kernel, by the ``cuobjdump`` in Triton's wheel."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(tool), "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", out)
    return dict(zip(("regs", "stack", "local"), map(int, found.groups()))) if found else {}


def _problems(compiled, arch: int) -> tuple[list[str], dict]:
    """Why ``compiled`` would not launch on ``sm_<arch>``: more shared memory than a block may have. (Registers
    cannot be: Triton gives ptxas the block's thread count, so it spills rather than exceed a block's 65,536.)"""
    shared = compiled.metadata.shared
    res = _resources(compiled.asm["cubin"])
    out = [] if res else ["cuobjdump read no resource usage"]
    if shared > SHARED_PER_BLOCK.get(arch, 49152):
        out.append(f"{shared} B shared memory > {SHARED_PER_BLOCK.get(arch, 49152)}")
    return out, res


def compile_launches(launches: dict, arch: int) -> list[dict]:
    """One row per recorded launch: compiled for ``sm_<arch>`` (Triton's specialisation of the recorded arguments,
    tensors as aligned ``MockTensor`` of their dtype) or why not, with its registers, spills and shared memory."""
    import torch
    from triton.runtime import driver
    from triton.runtime.jit import MockTensor

    def arg(v):
        return MockTensor(getattr(torch, v[1])) if isinstance(v, tuple) and v[:1] == ("tensor",) else v

    driver.set_active(_TargetDriver(arch))
    rows = []
    for module, name, args, kwargs in launches.values():
        row = {"kernel": f"{module.rsplit('.', 1)[-1]}.{name}",
               "compile-time": ", ".join(f"{k}={v}" for k, v in kwargs.items()), "warps": None, "regs": None,
               "spills": None, "shared": None, "ok": False, "error": ""}
        try:
            compiled = _kernel(module, name).warmup(*map(arg, args), grid=(1,), **{k: arg(v) for k, v in
                                                                                 kwargs.items()})
            problems, res = _problems(compiled, arch)
        except Exception as e:  # noqa: BLE001 (the row names the failure)
            lines = str(e).strip().splitlines()
            row["error"] = f"{type(e).__name__}: {lines[-1][:200] if lines else ''}"
            rows.append(row)
            continue
        row.update(warps=compiled.metadata.num_warps, regs=res.get("regs"),
                   spills=res.get("stack", 0) + res.get("local", 0), shared=compiled.metadata.shared,
                   ok=not problems, error="; ".join(problems))
        rows.append(row)
    return rows


def unlaunched(rows: list[dict]) -> list[str]:
    """The kernels of ``hyclora_hooks.kernels`` (named ``*_kernel``) that no row compiled: not checked by this run."""
    import pkgutil

    from hyclora_hooks import kernels
    from triton.runtime.jit import JITFunction

    seen, out = {r["kernel"] for r in rows}, []
    for info in pkgutil.iter_modules(kernels.__path__):
        mod = importlib.import_module(f"{kernels.__name__}.{info.name}")
        if not hasattr(mod, "_build"):
            continue
        mod._build()
        out += [f"{info.name}.{name}" for name, v in sorted(vars(mod).items())
                if isinstance(v, JITFunction) and name.endswith("_kernel") and f"{info.name}.{name}" not in seen]
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    a = build_parser().parse_args(argv)
    if a.record:
        with open(a.record, "wb") as f:
            pickle.dump(record(a), f)
        return []
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise SystemExit("check_compile: run it without TRITON_INTERPRET=1 (it compiles; its record step sets it)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "launches.pkl")
        child = [sys.executable, str(Path(__file__).resolve()), "--record", out, *(sys.argv[1:] if argv is None else argv)]
        subprocess.run(child, check=True, env={**os.environ, "TRITON_INTERPRET": "1"})
        with open(out, "rb") as f:
            launches = pickle.load(f)
    sys.path.insert(0, str(ROOT))
    rows = compile_launches(launches, a.arch)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    from tools.tables import print_rows

    print_rows(f"Triton launches of {a.configs} compiled for sm_{a.arch}", rows)
    bad = [r for r in rows if not r["ok"]]
    missing = unlaunched(rows)
    print(f"kernels these configurations did not launch (not checked): {', '.join(missing) or 'none'}")
    print(f"{len(rows)} distinct launches compiled for sm_{a.arch}: {len(rows) - len(bad)} ok, {len(bad)} failed")
    return rows


if __name__ == "__main__":
    sys.exit(1 if any(not r["ok"] for r in main()) else 0)
