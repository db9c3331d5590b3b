"""The host's CPU time of a replayed forward and backward on the dev CPU (session 26), for an A/B of two trees run
alternately in separate processes: thread CPU time (less of other processes' noise than wall time), medians of
``steps`` steps after warm-up, ``tools/bench_step.py``'s 8 layers at toy widths, one thread. Run it from each
tree's root (the old one a ``git archive`` with this file and ``ab_setup.py`` copied next to it), in turn:

    for r in 1 2 3 4 5 6 7; do for t in old new; do (cd /tmp/$t && python host_ab_cpu.py baseline,intra_inter@2 30); done; done
"""

import statistics
import sys
import time

sys.path.insert(0, ".")

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from ab_setup import TINY_WIDTHS  # noqa: E402
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    args = build_parser().parse_args(["--device", "cpu", "--layers", "8"] + TINY_WIDTHS)
    args.shape_list = [(1, 16)]
    model = build_model(args, torch.device("cpu"))
    batch = make_batch(args.vocab, 1, 16, torch.device("cpu"), 0)
    out = []
    for spec in sys.argv[1].split(","):
        preset, _, bits = spec.partition("@")

        def forward():
            with hy.compress(preset, model=model, **({"bits": int(bits)} if bits else {})):
                return model(**batch).loss

        for _ in range(8):
            forward().backward()
            model.zero_grad(set_to_none=True)
        fwd, bwd = [], []
        for _ in range(int(sys.argv[2])):
            t0 = time.thread_time()
            loss = forward()
            t1 = time.thread_time()
            loss.backward()
            t2 = time.thread_time()
            model.zero_grad(set_to_none=True)
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
        out.append(f"{spec}: fwd {statistics.median(fwd) * 1e3:.2f} bwd {statistics.median(bwd) * 1e3:.2f} ms")
    print(" | ".join(out))


if __name__ == "__main__":
    main()
