"""GPU check: the cross-entropy head's log-softmax from 16-bit logits (``kernels/log_softmax.py``,
``lineage.LogSoftmaxWide``).

Not a test. Under the ``inter`` policies the head's saved ``log_softmax(logits.float())`` is rebuilt in backward;
the kernel reads the bf16 logits once and writes the fp32 result, where the recipe used to widen them (a pass of
its own) and run torch's fp32 ``log_softmax``. This checks on the GPU that the kernel gives torch's bits (and that
``log_softmax_ordered``, the kernel's arithmetic in plain PyTorch, does too), at several vocabularies and with
adversarial rows, and times torch (``x.float()`` then ``log_softmax``), the widening kernel then torch's
``log_softmax`` (the recipe before), and the fused kernel at several warp counts (``triton.testing.do_bench``,
median ms). Then a whole model: a tiny Llama with a 32000-word vocabulary (bf16, SDPA) under a lossless ``inter``
policy must give exact autograd's LoRA gradients bit for bit with the kernel rebuilding the head.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_log_softmax.py

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: log_softmax of 16-bit logits in one pass.")
    p.add_argument("--vocabs", default="12256,32000,32768,49152,128256", help="comma list of vocabulary sizes")
    p.add_argument("--tokens", default="4096,8192", help="comma list of token counts timed at 32000 words")
    p.add_argument("--warps", default="4,8,16", help="comma list of the kernel's warp counts timed")
    args = p.parse_args(argv)
    import torch
    from triton.testing import do_bench

    from hyclora_hooks.kernels import log_softmax as ls
    from hyclora_hooks.kernels import widen
    from tools.lossless_model import counting, lossless_grads
    from tools.tables import print_rows

    dev, bf16, fp16 = "cuda", torch.bfloat16, torch.float16

    def same(a, b):
        return bool(((a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())).all())

    def logits(rows, v, dtype, seed):
        gen = torch.Generator(device=dev).manual_seed(seed)
        x = (torch.randn(rows, v, device=dev, generator=gen) * 3).to(dtype)
        x[0].fill_(0.0)  # all equal: the sum is exactly v
        x[1, : v // 2] = float("-inf")
        x[2].fill_(float("-inf"))  # torch: NaN (its running maximum starts at -FLT_MAX)
        x[3, 7] = 60000.0 if dtype == fp16 else 1e30  # one dominant word
        x[4, 5] = float("nan")
        x[5, 9] = float("inf")
        return x

    rows, warps_default = [], ls._WARPS
    for v in (int(s) for s in args.vocabs.split(",")):
        for dtype in (bf16, fp16):
            x = logits(64, v, dtype, v)
            want = torch.log_softmax(x.float(), -1)
            got = ls.log_softmax(x)
            rows.append({"case": f"64 x {v}, {str(dtype)[6:]}", "kernel": ls.fusable(x),
                         "same bits": same(got, want), "ordered ref same": same(ls.log_softmax_ordered(x), want),
                         "torch ms": float("nan"), "widen + torch ms": float("nan"), "kernel ms": ""})
    for tokens in (int(s) for s in args.tokens.split(",")):
        x = logits(tokens, 32000, bf16, tokens)
        want = torch.log_softmax(x.float(), -1)
        times = []
        for warps in (int(w) for w in args.warps.split(",")):
            ls._WARPS, ls._launches = warps, {}
            ok = same(ls.log_softmax(x), want)
            times.append(f"{warps}w {do_bench(lambda: ls.log_softmax_triton(x), return_mode='median'):.4f}"
                         + ("" if ok else " DIFFERS"))
        ls._WARPS, ls._launches = warps_default, {}
        rows.append({"case": f"{tokens} x 32000, bfloat16", "kernel": ls.fusable(x),
                     "same bits": same(ls.log_softmax(x), want), "ordered ref same": "",
                     "torch ms": do_bench(lambda: torch.log_softmax(x.float(), -1), return_mode="median"),
                     "widen + torch ms": do_bench(lambda: torch.log_softmax(widen.cast(x), -1), return_mode="median"),
                     "kernel ms": ", ".join(times)})

    # a whole model: a lossless inter policy, the kernel rebuilding the head, bit for bit
    grads = lossless_grads(vocab=32000)
    exact = grads()
    with counting(ls, "log_softmax_triton") as calls:
        same_model = torch.equal(grads(grads.keep_all), exact)
    rows.append({"case": "tiny Llama, vocab 32000, lossless inter policy", "kernel": f"{len(calls)} kernel calls",
                 "same bits": same_model, "ordered ref same": "", "torch ms": float("nan"),
                 "widen + torch ms": float("nan"), "kernel ms": ""})
    print_rows(f"log_softmax of 16-bit logits ({torch.cuda.get_device_name()}, torch {torch.__version__})", rows)
    return rows


if __name__ == "__main__":
    main()
