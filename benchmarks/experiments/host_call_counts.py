"""Python function calls and C calls a replayed step makes, by phase (session 26): a count, not a time, so it does
not move with the host's speed (the H200's host differs by up to 2x between machine starts, and the dev CPU's by
~30% between runs). ``sys.setprofile`` counts every ``call`` (a Python frame: a function, a generator resumed, a
comprehension on Python 3.11) and every ``c_call`` (a builtin or C method) during one forward (the ``with`` block)
and its backward, after warm-up, on ``tools/bench_step.py``'s model at toy widths on the CPU. ``--top N`` lists the
N commonest of each phase. What a call costs differs (a generator resumed is cheaper than a method call; an
``id()`` is a C call too): check a change that trades one kind for another with a timing as well.

    python benchmarks/experiments/host_call_counts.py plain,baseline,intra_inter@2 [--top 40]
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from ab_setup import TINY_WIDTHS  # noqa: E402
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402

OURS = ("hyclora_hooks/", "kernels/", "codecs/")


def counted(fn) -> tuple:
    """(``fn()``, a Counter of ("py", file, function) and ("c", name) events while it ran)."""
    calls: Counter = Counter()

    def profile(frame, event, arg):
        if event == "call":
            calls[("py", "/".join(frame.f_code.co_filename.split("/")[-2:]), frame.f_code.co_name)] += 1
        elif event == "c_call":
            calls[("c", getattr(arg, "__qualname__", str(arg)))] += 1

    sys.setprofile(profile)
    try:
        out = fn()
    finally:
        sys.setprofile(None)
    return out, calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", help="comma list: plain, or a preset with @bits")
    p.add_argument("--top", type=int, default=0)
    a = p.parse_args()
    args = build_parser().parse_args(["--device", "cpu", "--layers", "8"] + TINY_WIDTHS)
    args.shape_list = [(1, 16)]
    torch.manual_seed(0)
    model = build_model(args, torch.device("cpu"))
    batch = make_batch(args.vocab, 1, 16, torch.device("cpu"), 0)
    for spec in a.configs.split(","):
        preset, _, bits = spec.partition("@")

        def forward():
            if preset == "plain":
                return model(**batch).loss
            with hy.compress(preset, model=model, **({"bits": int(bits)} if bits else {})):
                return model(**batch).loss

        for _ in range(8):  # past calibration, and a recorded step: the counted one replays
            forward().backward()
            model.zero_grad(set_to_none=True)
        loss, fwd = counted(forward)
        _, bwd = counted(loss.backward)
        model.zero_grad(set_to_none=True)
        for phase, calls in (("forward", fwd), ("backward", bwd)):
            py = sum(n for k, n in calls.items() if k[0] == "py")
            ours = sum(n for k, n in calls.items() if k[0] == "py" and k[1].startswith(OURS))
            c = sum(n for k, n in calls.items() if k[0] == "c")
            print(f"{spec} {phase}: Python calls {py} (in hyclora_hooks and kernels {ours}), C calls {c}")
            for k, n in calls.most_common(a.top):
                print(f"    {n:6d} {' '.join(k)}")


if __name__ == "__main__":
    main()
