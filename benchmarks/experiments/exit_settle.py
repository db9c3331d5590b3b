"""What the blocking settle on ``compress()``'s exit costs a step (session 21): ``tools/bench_step.py`` with the exit's
settle of pending non-finite checks made non-blocking (``--lazy``: only the checks whose events have completed, and
the oldest while over the byte cap; decoding settles the rest, NOTE [Deferred non-finite check] rule 4), or as is.
The exit waits for the device to finish the forward's encodes, so the host starts the backward with the GPU idle;
left lazy, the sources of the unsettled checks stay alive past the forward (the activation figure shows them).

    PYTHONPATH=. python benchmarks/experiments/exit_settle.py --lazy --configs plain,intra_inter@2 --out $OUT/lazy
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hyclora_hooks import engine  # noqa: E402
from tools import bench_step  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--lazy" in argv:
        argv.remove("--lazy")
        settle = engine.Compressor._settle
        engine.Compressor._settle = lambda self, block=False: settle(self, False)
    sys.exit(bench_step.main(argv))
