"""Codecs: per-operator compressors of saved tensors, and their registry (one codec per module)."""

from .base import Codec, codec_names, make_codec, register_codec
from .bitmask import Bitmask
from .fp8 import Fp8
from .keep import Keep
from .lowrank import LowRank
from .offload import Offload
from .quant import Quant
from .sparse import Sparse

__all__ = ["Bitmask", "Codec", "Fp8", "Keep", "LowRank", "Offload", "Quant", "Sparse", "codec_names", "make_codec",
           "register_codec"]
