"""Codecs: per-operator compressors of saved tensors, and their registry (one codec per module)."""

from .base import Codec, codec_names, make_codec, register_codec
from .keep import Keep
from .lowrank import LowRank
from .quant import Quant

__all__ = ["Codec", "Keep", "LowRank", "Quant", "codec_names", "make_codec", "register_codec"]
