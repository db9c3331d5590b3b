"""``tools/check_compile.py``: every Triton kernel a hooked step launches compiles for the H100/H200 (sm_90).

The other tests run the kernels under ``TRITON_INTERPRET=1``, which never lowers them to the GPU: a kernel can pass
them all and still not compile (session 47's ``swiglu._as_half`` did not: a static ``if``'s fall-through return).
Each check runs in a child process without the interpreter, since a kernel module built under it holds no
``JITFunction`` to compile (the tool refuses to run under it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": str(ROOT)}


def test_every_kernel_a_step_launches_compiles_for_sm90(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_compile.py"), "--tiny", "--json", str(out),
                           "--dtypes", "bf16,fp16",
                           "--configs", "intra@2,intra_inter@2,intra_inter@4,intra_inter_full_fuse@2,"
                           "intra_inter+checkpoint@2"], env=ENV, capture_output=True, text=True)
    assert out.exists(), done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r for r in rows if not r["ok"]] == []
    assert done.returncode == 0
    launched = {(r["kernel"], r["compile-time"]) for r in rows}
    kernels = {k for k, _ in launched}
    # the paths of a replayed Llama step on CUDA: the LoRA branch node both ways, the RMSNorm node both ways, the
    # norm tail's 16-bit store (the kernels session 47's bug broke), quantize/dequantize, SwiGLU, q/k's LoRA part
    # and their rebuild through RoPE (a head size of 32 in the toy widths: the least the kernel takes)
    assert {"lora_branch._forward_kernel", "lora_branch._input_kernel", "lora_branch._rows_kernel",
            "lora_branch._cols_kernel", "rms_norm._forward_kernel", "rms_norm._backward_kernel",
            "norm_tail._norm_tail_kernel", "swiglu._silu_mul_kernel", "quant._dequant_words_kernel",
            "rope_part._rope_part_kernel", "lora_part._lora_part_kernel"} <= kernels
    assert any(k == "norm_tail._norm_tail_kernel" and "NARROW=True" in c for k, c in launched)
    # fp16 models (KIND=1) and the device's dot precision, not the interpreter's
    assert any(k == "rms_norm._forward_kernel" and "KIND=1" in c for k, c in launched)
    assert all("PREC=tf32x3" in c for k, c in launched if k.startswith("lora_branch."))
    assert all(r["regs"] and r["warps"] for r in rows)


PROBE = '''
"""Probe kernels for tests/test_check_compile.py: one that the interpreter runs and the GPU's compiler refuses,
one that needs more shared memory than a block has, and one that is fine."""
from __future__ import annotations

from hyclora_hooks.kernels.jit import build, once

tl = None


def _as_half(v, KIND: tl.constexpr):
    if KIND == 0:
        return v.to(tl.bfloat16)
    return v.to(tl.float16)  # compiled too: two return types


def _fallthrough_kernel(x_ptr, o_ptr, N, KIND: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(o_ptr + i, _as_half(tl.load(x_ptr + i, mask=i < N, other=0.0), KIND), mask=i < N)


def _big_dot_kernel(a_ptr, b_ptr, c_ptr, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    m, n, k = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for s in range(0, K, BK):
        a = tl.load(a_ptr + m[:, None] * K + (s + k)[None, :])
        b = tl.load(b_ptr + (s + k)[:, None] * BN + n[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + m[:, None] * BN + n[None, :], acc)


def _copy_kernel(x_ptr, o_ptr, N, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(o_ptr + i, tl.load(x_ptr + i, mask=i < N), mask=i < N)


@once
def _build():
    build(globals(), ("_as_half", "_fallthrough_kernel", "_big_dot_kernel", "_copy_kernel"))
'''


def test_the_check_fails_a_kernel_the_gpu_would_refuse(tmp_path):
    (tmp_path / "probe_kernels.py").write_text(PROBE)
    code = textwrap.dedent("""
        import json, sys
        from tools.check_compile import compile_launches
        f32 = ("tensor", "float32")
        launches = {
            0: ("probe_kernels", "_fallthrough_kernel", (f32, f32, 100), {"KIND": 0, "BLOCK": 128}),
            1: ("probe_kernels", "_big_dot_kernel", (f32, f32, f32, 4096),
                {"BM": 256, "BN": 256, "BK": 128, "num_stages": 4}),
            2: ("probe_kernels", "_copy_kernel", (("tensor", "bfloat16"), ("tensor", "bfloat16"), 100),
                {"BLOCK": 1024}),
        }
        print(json.dumps(compile_launches(launches, 90)))
    """)
    done = subprocess.run([sys.executable, "-c", code], env={**ENV, "PYTHONPATH": f"{ROOT}:{tmp_path}"},
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    fallthrough, big, fine = json.loads(done.stdout.strip().splitlines()[-1])
    assert not fallthrough["ok"] and "CompilationError" in fallthrough["error"]
    assert not big["ok"] and "shared memory" in big["error"] and big["shared"] > 232448
    assert fine["ok"] and fine["error"] == "" and fine["regs"] > 0 and fine["warps"] == 4


def test_the_check_refuses_to_run_under_the_interpreter():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_compile.py"), "--tiny"],
                          env={**ENV, "TRITON_INTERPRET": "1"}, capture_output=True, text=True)
    assert done.returncode != 0 and "without TRITON_INTERPRET=1" in done.stderr
