"""The bitmask codec's encode and decode on the GPU (session 29): device and host time a call, against a variant
that packs through an int64 view and one multiply (a word of eight 0/1 bytes times 0x0102040810204080 has the eight
bits in its top byte, no carries), and a copy of the mask. Checks the variant's bytes against the codec's.

    PYTHONPATH=. python benchmarks/experiments/bitmask_speed.py
"""
import sys
import time

import torch

sys.path.insert(0, ".")
from hyclora_hooks.codecs import make_codec  # noqa: E402
from tools.bench_quant import timers  # noqa: E402

dev_time = timers(True)[1]
MAGIC = 0x0102040810204080


def magic_encode(m: torch.Tensor) -> torch.Tensor:
    return ((m.reshape(-1).view(torch.int64) * MAGIC) >> 56).to(torch.uint8)


def main() -> None:
    codec = make_codec("bitmask", {})
    for shape in ((4096, 4096), (4096, 11008)):
        m = torch.rand(shape, device="cuda") > 0.05
        payload = codec.encode(m)
        assert torch.equal(codec.decode(payload), m)
        print(shape, "int64 variant's bytes equal the codec's:", torch.equal(magic_encode(m), payload.packed))
        for name, fn in (("encode", lambda: codec.encode(m)), ("decode", lambda: codec.decode(payload)),
                         ("int64 encode", lambda: magic_encode(m)), ("copy", lambda: m.clone())):
            t = dev_time(fn) * 1e6
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(50):
                fn()
            host = (time.perf_counter() - t0) / 50 * 1e6
            torch.cuda.synchronize()
            print(f"{shape} {name:13} GPU {t:8.1f} us   host {host:7.1f} us", flush=True)


if __name__ == "__main__":
    main()
