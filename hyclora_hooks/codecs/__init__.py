"""Codecs: per-operator compressors of saved tensors, and their registry (one codec per module)."""

from .base import Codec, codec_names, make_codec, register_codec
from .keep import Keep
from .lowrank import LowRank
from .offload import Offload
from .quant import Quant

__all__ = ["Codec", "Keep", "LowRank", "Offload", "Quant", "codec_names", "make_codec", "register_codec"]
