"""Which half of intra_inter_full_fuse costs step time: FUSE_OFF=deqadd|swiglu|none disables one fusion."""
import os, sys
sys.path.insert(0, ".")
from hyclora_hooks import engine, lineage
off = os.environ.get("FUSE_OFF", "none")
if off == "deqadd":
    engine.Entry.decode_add = lambda self, add, dtype: None
elif off == "swiglu":
    lineage.fuse_swiglu = lambda node: node
import tools.bench_step as B
sys.exit(B.main(sys.argv[1:]))
