"""GPU check: the loss head's gradient formed in the forward (NOTE [Fused head] in ``hyclora_hooks/head.py``).

Not a test. With ``fuse_head`` a policy keeps the cross-entropy loss's gradient for the lm_head's input, formed by
the graph's own backward nodes during the forward, and only scales it in backward. On a tiny Llama (bf16, SDPA,
LoRA on every linear, a 32000-word head) this checks that a lossless ``inter`` policy with ``fuse_head`` gives exact
autograd's LoRA gradients bit for bit where the loss's incoming gradient is a power of two (1 and 0.5) and how far
they are where it is not (1/3: plain rounds the logits' gradient after scaling it, the fused head before), beside
the same policy replaying the head instead, and plain autograd run twice (the witness that a difference is not the
GPU's summation order).

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_fused_head.py
"""

from __future__ import annotations

import argparse
import dataclasses


def main() -> None:
    p = argparse.ArgumentParser(description="GPU check: the loss head's gradient formed in the forward.")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    a = p.parse_args()

    import torch

    from tools.tables import print_rows
    from tools.lossless_model import lossless_grads

    grads = lossless_grads(vocab=a.vocab, device=a.device)
    fused = dataclasses.replace(grads.keep_all, fuse_head=True)
    rows = []
    for scale in (1.0, 0.5, 1 / 3):
        want, again = grads(None, scale), grads(None, scale)
        for name, policy in (("inter, head replayed", grads.keep_all), ("inter, fused head", fused)):
            got = grads(policy, scale)
            rows.append({"incoming grad": f"{scale:.4g}", "policy": name, "plain twice same": torch.equal(want, again),
                         "same bits as plain": torch.equal(got, want),
                         "max |diff| / max |grad|": f"{((got - want).abs().max() / want.abs().max()).item():.3g}"})
    device = torch.cuda.get_device_name() if a.device == "cuda" else a.device
    print_rows(f"fused loss head ({device}, torch {torch.__version__})", rows)


if __name__ == "__main__":
    main()
