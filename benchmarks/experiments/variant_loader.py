"""Kernel variants made by editing a library kernel's source, loaded as modules of their own: Triton's JIT reads a
function's source from its file, so each variant is written to a temporary file first. Shared by the experiments
that compare such variants (``quant_variants.py``, ``quant_words_common.kernel_variants``)."""
import importlib.util
import itertools
import os
import tempfile

_DIR = tempfile.mkdtemp()
_IDS = itertools.count()


def load_kernel(header: str, source: str, name: str):
    """The attribute ``name`` of a new module whose text is ``header`` followed by ``source``."""
    i = next(_IDS)
    path = os.path.join(_DIR, f"variant{i}.py")
    with open(path, "w") as fh:
        fh.write(header + source)
    spec = importlib.util.spec_from_file_location(f"variant{i}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)
