"""What one Python call and one C call cost on this host (session 26): turns the counts of ``host_call_counts.py``
into an estimate of host time. Each case timed with ``timeit`` (best of 7 repeats of 200,000), printed in ns:
calling an empty function and an empty method, resuming a generator, ``id()``, a dict lookup by an ``int`` key and
by a tuple holding a ``StorageWeakRef`` (its Python ``__hash__``) or a ``lineage.StorageKey`` (hashed in C).

    python benchmarks/experiments/call_costs.py
"""

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch.multiprocessing.reductions import StorageWeakRef  # noqa: E402

from hyclora_hooks.lineage import storage_ref  # noqa: E402


def f():
    return None


class C:
    def m(self):
        return None


def gen():
    while True:
        yield None


def main() -> None:
    storage = torch.empty(4).untyped_storage()
    weak, key = StorageWeakRef(storage), storage_ref(storage)
    g = gen()
    env = {"f": f, "c": C(), "g": g, "x": object(), "d_int": {7: 1}, "d_weak": {(weak, 0): 1}, "d_key": {(key, 0): 1},
           "weak": weak, "key": key}
    cases = {
        "empty function call": "f()",
        "empty method call": "c.m()",
        "generator resumed": "next(g)",
        "id()": "id(x)",
        "dict[int]": "d_int[7]",
        "dict[(StorageWeakRef, 0)]": "d_weak[(weak, 0)]",
        "dict[(StorageKey, 0)]": "d_key[(key, 0)]",
    }
    base = min(timeit.repeat("pass", globals=env, number=200_000, repeat=7)) / 200_000
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}")
    for name, stmt in cases.items():
        t = min(timeit.repeat(stmt, globals=env, number=200_000, repeat=7)) / 200_000
        print(f"  {name:28s} {(t - base) * 1e9:7.1f} ns")


if __name__ == "__main__":
    main()
