"""GPU check: the SDPA replay (attention.py) against the forward it replays, and what each replay backend costs.

Not a test. ``intra_inter`` rebuilds SDPA's output and logsumexp in backward from the decoded q, k, v
(``SdpaRecompute``). On unchanged inputs the replay must give the forward's bits: for each backend the forward can
run (cuDNN, flash), this runs the forward under that backend, saves what autograd saved (output and logsumexp) and
compares the replay (``sdpa_with_lse`` with ``cudnn=`` as ``SdpaRecompute`` sets it) bit for bit, causal and with
a boolean padding mask (causal and the last row's last eighth of keys masked: what transformers passes for a padded
batch). Then it times the replay kernels at Llama-2-7B attention shapes (32 heads of 128) with
``triton.testing.do_bench`` (``flash ms``: flash without a mask, the fp32 math path with one).

    PYTHONPATH=. python tools/check_sdpa_replay.py                  # 4x1024 and 1x8192
    PYTHONPATH=. python tools/check_sdpa_replay.py --shapes 2x512

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="GPU check: the SDPA replay against the forward it replays.")
    p.add_argument("--shapes", default="4x1024,1x8192", help="comma list of BATCHxSEQ")
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--head-dim", type=int, default=128)
    return p.parse_args(argv)


def _saved(backend, q, k, v, mask):
    """Output and logsumexp that SDPA under ``backend`` saves for backward."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    saved: list = []

    def pack(t):
        saved.append(t)
        return t

    with sdpa_kernel(backend), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
    lse = [t for t in saved if t.dtype == torch.float32 and t.shape[:3] == q.shape[:3]]
    return out.detach(), lse[0] if lse else None


def main(argv: list[str] | None = None) -> list[dict]:
    args = _parse(argv)
    import torch
    from rich.console import Console
    from rich.table import Table
    from torch.nn.attention import SDPBackend
    from triton.testing import do_bench

    from hyclora_hooks.attention import fit_logsumexp, saved_by_cudnn, sdpa_with_lse

    rows = []
    for spec in args.shapes.split(","):
        b, t = (int(x) for x in spec.split("x"))
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v = (torch.randn(b, args.heads, t, args.head_dim, device="cuda", dtype=torch.bfloat16, generator=g,
                               requires_grad=True) for _ in range(3))
        padded = torch.ones(t, t, dtype=torch.bool, device="cuda").tril().expand(b, 1, t, t).clone()
        padded[-1, ..., t - t // 8:] = False
        for mask, backend in ((None, SDPBackend.CUDNN_ATTENTION), (None, SDPBackend.FLASH_ATTENTION),
                              (padded, SDPBackend.CUDNN_ATTENTION), (padded, SDPBackend.EFFICIENT_ATTENTION)):
            name = backend.name + ("" if mask is None else " + mask")
            try:
                out, lse = _saved(backend, q, k, v, mask)
            except RuntimeError as e:  # the backend does not run here
                rows.append({"shape": spec, "backend": name, "error": str(e).splitlines()[0][:60]})
                continue
            if lse is None:
                rows.append({"shape": spec, "backend": name, "error": "no logsumexp saved"})
                continue
            cudnn = saved_by_cudnn(tuple(lse.shape))
            causal = mask is None
            with torch.no_grad():
                r_out, r_lse = sdpa_with_lse(q.detach(), k.detach(), v.detach(), mask, causal, None, cudnn=cudnn)
                r_lse = fit_logsumexp(r_lse, tuple(lse.shape))
                ms_cudnn = do_bench(lambda: sdpa_with_lse(q, k, v, mask, causal, None, cudnn=True), rep=100)
                ms_flash = do_bench(lambda: sdpa_with_lse(q, k, v, mask, causal, None, cudnn=False), rep=100)
            rows.append({"shape": spec, "backend": name, "lse": tuple(lse.shape), "replay_cudnn": cudnn,
                         "out_equal": bool(torch.equal(r_out, out)), "lse_equal": bool(torch.equal(r_lse, lse)),
                         "out_max_diff": float((r_out.float() - out.float()).abs().max()),
                         "ms_cudnn": ms_cudnn, "ms_flash": ms_flash})
    table = Table(title=f"SDPA replay against the forward ({torch.cuda.get_device_name()}, torch {torch.__version__})")
    for col in ("shape", "forward backend", "saved lse", "replay", "out bits", "lse bits", "max |diff|",
                "cudnn ms", "flash ms"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["shape"], r["backend"], "-", "-", "-", "-", r["error"], "-", "-")
            continue
        table.add_row(r["shape"], r["backend"], str(r["lse"]), "cudnn" if r["replay_cudnn"] else "flash",
                      "equal" if r["out_equal"] else "DIFFER", "equal" if r["lse_equal"] else "DIFFER",
                      f"{r['out_max_diff']:.3g}", f"{r['ms_cudnn']:.3f}", f"{r['ms_flash']:.3f}")
    Console(width=160).print(table)
    return rows


if __name__ == "__main__":
    main()
