"""hyclora_hooks: compress what autograd saves for backward, on any PyTorch model, through saved-tensor hooks.

>>> import hyclora_hooks as hyclora
>>> with hyclora.compress("intra", bits=4) as ctx:     # doctest: +SKIP
...     loss = model(**batch).loss
>>> loss.backward()                                    # doctest: +SKIP
"""

from pathlib import Path as _Path

# In a source checkout, kernels/, policies/ and tools/ sit beside this package; installed, they live inside it
# as hyclora_hooks.kernels etc. (pyproject's package-dir). Let a checkout on PYTHONPATH resolve the same names.
_here = _Path(__file__).resolve().parent
if not (_here / "kernels").is_dir() and (_here.parent / "kernels" / "quant.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 - the package's own search path

from .accounting import Report, memory_snapshot  # noqa: E402
from .codecs import Codec, codec_names, make_codec, register_codec  # noqa: E402
from .engine import Compressor, compress  # noqa: E402
from .errors import HycloraError, HycloraTypeError, HycloraValueError, PolicyFileError, UnsupportedError  # noqa: E402
from .policy import Knobs, Policy, Rule, load_policy, preset_names  # noqa: E402
from .sites import OP_CLASSES, SaveSite  # noqa: E402

__version__ = "0.1.0"

__all__ = ["compress", "Compressor", "Policy", "Rule", "Knobs", "load_policy", "preset_names", "Report",
           "memory_snapshot", "Codec", "register_codec", "make_codec", "codec_names", "SaveSite", "OP_CLASSES",
           "HycloraError", "HycloraValueError", "HycloraTypeError", "PolicyFileError", "UnsupportedError"]

from .abtest import ABResult, PolicyRun, ab  # noqa: E402,I001 - the A/B tool (issue 5)
__all__ += ["ab", "ABResult", "PolicyRun"]
from .fidelity import ProbeResult, probe  # noqa: E402,I001 - fidelity of policies at a trained state
__all__ += ["probe", "ProbeResult"]
