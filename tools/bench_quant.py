"""GPU benchmark of the ``quant`` kernels: GB/s of quantize+pack and unpack+dequantize against a copy.

Not a test. For bf16 tensors of 64 MiB to 1 GiB (hidden size 4096), at 2/4/8 bits, without and with outlier
channels (0.5% of channels, frozen as after calibration: the steady state of training), it times

* ``copy``: ``dst.copy_(src)`` in the same run; bytes = read + written = 2 x the tensor;
* ``quantize``: :func:`hyclora_hooks.kernels.quant.quantize_triton` (the codec's CUDA path) run as ``compress()``
  runs it: inside a non-finite collector, so its flag is read later instead of at once (``kernels/nonfinite.py``;
  a record is settled once its event has completed, or when 64 are pending); bytes = the tensor read + the payload written;
* ``dequantize``: :func:`dequantize_triton`; bytes = the payload read + the tensor written;

with ``triton.testing.do_bench`` (median; a call's time, launch path included: at small sizes the host's) and
with the torch profiler (the call's GPU work alone: kernels, memsets, copies), and checks on the GPU, in the same run, that the kernels store the
same bytes as the plain-PyTorch reference and decode the same values (64 MiB tensors). Extra rows (4 bits):
per-token-group steps (intra_inter's), per-channel steps (two passes: statistics, then codes) and dynamic outliers
(a scoring pass first); and for the token-group row the LoRA re-add of ``intra_inter_full_fuse``, fused
(``deq+add``: :func:`dequantize_add`) against dequantize-then-add (``deq,add``), both counted as the bytes a
perfect fused pass moves (payload and fp32 branch read, result written), checked bit-equal (the unfused
side is ``lineage.lora_combine`` after :func:`dequantize_triton`, what ``intra_inter`` runs).
``--tiles 4096x8,8192x16`` sweeps the kernels' tile size and warps.

    python tools/bench_quant.py --out bench_quant.json          # on a GPU; ~2-3 minutes on an H100
    TRITON_INTERPRET=1 python tools/bench_quant.py --smoke      # CPU: tiny sizes, checks the script's logic

The last thing printed is the table; ``--out`` writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--sizes-mib", default="64,256,1024", help="tensor sizes in MiB (bf16)")
    p.add_argument("--bits", default="2,4,8")
    p.add_argument("--hidden", type=int, default=4096, help="last dimension (channels)")
    p.add_argument("--outlier-ratio", type=float, default=0.005, help="HyC-LoRA's layernorm_outlier_ratio")
    p.add_argument("--group-size", type=int, default=64)
    p.add_argument("--tiles", default="", help="sweep: comma list of TILExWARPS (e.g. 4096x8,8192x8) for the "
                   "group and token_group rows (sets the element and the word kernels' tiles); the defaults when empty")
    p.add_argument("--element-kernels", action="store_true", help="time the element kernels (any dtype and "
                   "layout) instead of the word kernels that bf16/fp16 with whole words of channels take")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, runs on CPU under TRITON_INTERPRET=1")
    return p.parse_args(argv)


def device_and_timers(tool: str, smoke: bool) -> tuple | None:
    """``(device, bench, device_time)`` (see :func:`timers`): CUDA, or the CPU for ``--smoke``; None, with a
    message, on a machine without CUDA otherwise."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not smoke:
        print(f"{tool}: no CUDA device; use --smoke for a CPU check of the script", file=sys.stderr)
        return None
    return (torch.device("cuda" if cuda else "cpu"),) + timers(cuda)


def timers(cuda: bool) -> tuple:
    """``(bench, device_time)``: seconds a call. ``bench``: ``triton.testing.do_bench``'s median (a call's time as
    a caller sees it, launch path included: at small sizes the host's). ``device_time``: the call's GPU work alone
    (kernels, memsets and copies it launches, summed by the torch profiler over 20 calls): the kernels' own rate,
    whatever the host costs around them. On CPU (``--smoke``) both are a median of wall times."""
    import torch

    if not cuda:
        def wall(fn):
            fn()
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return statistics.median(ts)
        return wall, wall
    import triton.testing
    from torch.profiler import ProfilerActivity, profile

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3

    def device_time(fn, reps: int = 20) -> float:
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                fn()
            torch.cuda.synchronize()
        return sum(e.self_device_time_total for e in prof.key_averages()) * 1e-6 / reps
    return bench, device_time


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported
    repo = Path(__file__).resolve().parent.parent
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    import torch

    from hyclora_hooks.kernels import quant as Q
    from hyclora_hooks.kernels.nonfinite import collecting
    from hyclora_hooks.lineage import lora_combine

    Q.WORD_KERNELS = not args.element_kernels
    found = device_and_timers("bench_quant", args.smoke)
    if found is None:
        return 2
    dev, bench, device_time = found
    cuda = dev.type == "cuda"

    sizes = [int(s) for s in args.sizes_mib.split(",")] if not args.smoke else [0]
    bits_list = [int(b) for b in args.bits.split(",")]
    c = args.hidden if not args.smoke else 256
    g = args.group_size
    gen = torch.Generator(device=dev).manual_seed(0)
    rows_out: list[dict] = []
    pending: list = []  # deferred non-finite records of timed encodes
    checks: list[dict] = []
    default_tile = (Q._TILE, Q._WARPS, Q._WORD_TILE, Q._WORD_TILE_OUTLIERS)
    tiles = [tuple(int(v) for v in t.split("x")) for t in args.tiles.split(",") if t]

    def make(rows: int):
        x = torch.randn((rows, c), generator=gen, device=dev, dtype=torch.float32).to(torch.bfloat16)
        k = max(1, int(round(args.outlier_ratio * c)))
        ch = torch.randperm(c, generator=gen, device=dev)[:k]
        x[:, ch] *= 40  # residual-stream-like outlier channels
        return x, torch.sort(ch).values.to(Q.index_dtype(c))

    def check(x, bits, idx, granularity):
        a = Q.quantize_ref(x, bits, g, False, granularity, idx)
        same = same_dec = True
        for _ in range(2):  # the first launch compiles; the second takes the compiled kernel's launcher (kernels/launch.py)
            b = Q.quantize_triton(x, bits, g, False, granularity, idx)
            same = same and all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("packed", "scale", "zero")
                                if getattr(a, f) is not None)
            if idx is not None:
                same = same and torch.equal(a.outlier_value, b.outlier_value)
            ya, yb = Q.dequantize_ref(a), Q.dequantize_triton(b)
            same_dec = same_dec and torch.equal(ya.view(torch.int16), yb.view(torch.int16))
        checks.append({"bits": bits, "outliers": idx is not None, "granularity": granularity, "rows": x.shape[0],
                       "bytes_equal": bool(same), "decode_equal": bool(same_dec), "nbytes": b.nbytes})
        # NaN/Inf as compress() meets them: the kernel raises its flag (on CUDA in pinned host memory), the
        # deferred check re-runs it checked, and the values come back in place, the rest as the reference's
        bad = x[:257].clone()
        n = bad.shape[0]
        bad[0, 7], bad[n // 2, -1], bad[n - 1, 1] = float("nan"), float("inf"), float("-inf")
        sink: list = []
        with collecting(sink.append):
            qb = Q.quantize_triton(bad, bits, g, False, granularity, idx)
        for rec in sink:
            rec.settle()
        ref_b = Q.dequantize_ref(Q.quantize_ref(bad, bits, g, False, granularity, idx))
        same_nf = torch.equal(Q.dequantize_triton(qb).view(torch.int16), ref_b.view(torch.int16))
        checks.append({"bits": bits, "outliers": idx is not None, "granularity": granularity + "+nan/inf",
                       "rows": bad.shape[0], "bytes_equal": True, "decode_equal": bool(same_nf), "nbytes": qb.nbytes})
        return same and same_dec and same_nf

    for mib in sizes:
        rows = (mib << 20) // (2 * c) if mib else 96
        x, idx = make(rows)
        nbytes = x.numel() * x.element_size()
        dst = torch.empty_like(x)
        t_copy = bench(lambda: dst.copy_(x))
        dev_copy = device_time(lambda: dst.copy_(x))
        copy_gbs = 2 * nbytes / t_copy / 1e9
        rows_out.append({"size_mib": mib, "op": "copy", "bits": None, "outliers": False, "granularity": "-",
                         "seconds": t_copy, "bytes": 2 * nbytes, "gbps": copy_gbs, "pct_copy": 100.0,
                         "device_seconds": dev_copy, "device_pct_copy": 100.0})
        dst = None  # (not del: the timed lambdas above name it)
        configs = [(b, o, "group") for b in bits_list for o in (False, True)]
        if 4 in bits_list:
            configs += [(4, True, "token_group"), (4, True, "channel"), (4, True, "dynamic")]
        if tiles:
            configs = [(b, o, gr, t) for b, o, gr in configs for t in tiles if gr in ("group", "token_group")]
        else:
            configs = [cfg + (None,) for cfg in configs]
        for bits, outl, gran, tile in configs:
            if tile is not None:
                Q._TILE, Q._WARPS = tile
                Q._WORD_TILE = Q._WORD_TILE_OUTLIERS = tile[0]
            oi = idx if outl else None
            if gran == "dynamic":
                def enc(bits=bits):
                    sc = Q.outlier_scores(x)
                    return Q.quantize_triton(x, bits, g, False, "group", Q.top_channels(sc, idx.numel()))
            else:
                def enc(bits=bits, oi=oi, gran=gran):
                    return Q.quantize_triton(x, bits, g, False, gran, oi)

            def enc_deferred(enc=enc):  # as compress() runs it: flags read once their event has completed
                while pending and (len(pending) > 64 or pending[0].ready()):
                    pending.pop(0).settle()
                with collecting(pending.append):
                    return enc()
            if mib == sizes[0] and gran != "dynamic" and (tile is None or tile == tiles[0]):
                check(x, bits, oi, gran)
            q = enc()
            payload = q.nbytes
            t_q = bench(enc_deferred)
            dev_q = device_time(enc_deferred)
            while pending:
                pending.pop(0).settle()
            t_d = bench(lambda q=q: Q.dequantize_triton(q))
            dev_d = device_time(lambda q=q: Q.dequantize_triton(q))
            timed = [("quantize", t_q, nbytes + payload, dev_q), ("dequantize", t_d, nbytes + payload, dev_d)]
            if gran == "token_group" and tile is None:  # intra_inter_full_fuse's LoRA re-add: fused vs unfused
                branch = torch.randn(x.shape, generator=gen, device=dev) * 0.05  # fp32, as peft's LoRA branch
                fused = Q.dequantize_add(q, branch)
                unfused = lora_combine(Q.dequantize_triton(q), branch, x.dtype)  # intra_inter's decode
                if mib == sizes[0]:
                    checks.append({"bits": bits, "outliers": outl, "granularity": "token_group+add", "rows": rows,
                                   "bytes_equal": True, "decode_equal": bool(torch.equal(fused.view(torch.int16),
                                                                                        unfused.view(torch.int16))),
                                   "nbytes": payload})
                del fused, unfused
                t_f = bench(lambda q=q, b=branch: Q.dequantize_add(q, b))
                t_u = bench(lambda q=q, b=branch: lora_combine(Q.dequantize_triton(q), b, x.dtype))
                # bytes a perfect fused pass moves: payload + branch read, result written
                timed += [("deq+add", t_f, payload + 2 * nbytes + nbytes, None),
                          ("deq,add", t_u, payload + 3 * nbytes, None)]
                del branch
            for op, t, moved, t_dev in timed:
                rows_out.append({"size_mib": mib, "op": op, "bits": bits, "outliers": outl, "granularity": gran,
                                 "tile": f"{Q._TILE}x{Q._WARPS}", "word_tile": Q._WORD_TILE, "seconds": t,
                                 "bytes": moved, "gbps": moved / t / 1e9,
                                 "pct_copy": 100.0 * (moved / t) / (2 * nbytes / t_copy),
                                 "device_seconds": t_dev, "device_pct_copy": None if t_dev is None
                                 else 100.0 * (moved / t_dev) / (2 * nbytes / dev_copy),
                                 "payload_ratio": payload / nbytes})
            del q
        x = None  # free the GPU copy before the next size (not del: the timed lambdas name it)
        if cuda:
            torch.cuda.empty_cache()
    Q._TILE, Q._WARPS, Q._WORD_TILE, Q._WORD_TILE_OUTLIERS = default_tile

    meta = {"device": torch.cuda.get_device_name(0) if cuda else "cpu (TRITON_INTERPRET)",
            "torch": torch.__version__, "triton": _triton_version(), "date": datetime.date.today().isoformat(),
            "hidden": c, "group_size": g, "outlier_ratio": args.outlier_ratio,
            "kernels": "element" if args.element_kernels else "word",
            "command": "python tools/bench_quant.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    result = {"meta": meta, "rows": rows_out, "checks": checks,
              "all_checks_pass": all(ch["bytes_equal"] and ch["decode_equal"] for ch in checks)}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    _print_table(result)
    return 0 if result["all_checks_pass"] else 1


def _triton_version() -> str:
    try:
        import triton
        return triton.__version__
    except Exception:
        return "missing"


def _print_table(result: dict) -> None:
    m = result["meta"]
    print(f"\nquant kernels on {m['device']} (torch {m['torch']}, triton {m['triton']}, {m['date']}); "
          f"bf16 x {m['hidden']} channels, groups of {m['group_size']}, outliers {m['outlier_ratio']:g}, "
          f"{m.get('kernels', 'word')} kernels")
    print("correctness vs reference on this device:",
          "all bit-exact" if result["all_checks_pass"] else
          "MISMATCH: " + ", ".join(f"{c['bits']}b/{c['granularity']}/o={c['outliers']}" for c in result["checks"]
                                   if not (c["bytes_equal"] and c["decode_equal"])))
    print("us / GB/s / % copy: a call as compress() makes it, timed by do_bench (at small sizes the host's launch "
          "path shows); dev us / dev %: its GPU work alone (profiler), against the copy's")
    print(f"{'MiB':>6} {'op':<11} {'bits':>4} {'outl':>5} {'gran':<12} {'tile':>8} {'us':>9} {'GB/s':>8} {'% copy':>7}"
          f" {'dev us':>8} {'dev %':>6}")
    for r in result["rows"]:
        dev = r.get("device_seconds")
        dev_s = f" {dev * 1e6:>8.1f} {r['device_pct_copy']:>5.1f}%" if dev is not None else f" {'-':>8} {'-':>6}"
        print(f"{r['size_mib']:>6} {r['op']:<11} {str(r['bits'] or '-'):>4} {'yes' if r['outliers'] else 'no':>5} "
              f"{r['granularity']:<12} {r.get('tile', '-'):>8} {r['seconds'] * 1e6:>9.1f} {r['gbps']:>8.1f} "
              f"{r['pct_copy']:>6.1f}%" + dev_s)


if __name__ == "__main__":
    sys.exit(main())
