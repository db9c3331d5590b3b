"""What a saved tensor is: the op class and role of a pack, decided from the op, the module and lineage.

No model-specific code: classification reads the torch-level op that saved the tensor (``linear``,
``scaled_dot_product_attention``, ``mul`` ...), the class name of the innermost module (``*Norm*``,
``*Attention*``, ``*Activation*``), peft's module names (``lora_A`` / ``lora_B``) and the op that produced
each operand (tagged by :class:`~hyclora_hooks.tracking.OpTracker`).

Op classes and their roles:

=================  ==================================================================================
``linear``         ``base_input`` (frozen weight), ``lora_a_input``, ``lora_b_input``, ``trainable_input``
``norm``           ``input`` (the normalised tensor), ``normalized`` (operand of the weight mul), ``stats``
``attention``      SDPA: ``query``, ``key``, ``value``, ``output``, ``logsumexp``, ``internal``;
                   eager: ``scores`` (q/k of the first matmul), ``probs``, ``value``, ``softmax``,
                   ``dropout``; ``rope`` for elementwise muls inside an attention module
``activation``     the op's name (``silu``, ``gelu``, ``tanh`` ...)
``mul``            ``swiglu`` (an operand comes from an activation), ``elementwise``
``cast``           dtype conversions that save (rare)
``embedding``      ``indices``
``cross_entropy``  ``log_softmax``, ``target``, ``internal``; ``loss_grad``: the fused head's kept gradient
                   (NOTE [Fused head] in ``head.py``; set by the engine, not here)
``dropout``        ``mask`` (outside attention)
``checkpoint``     ``input``: a ``torch.utils.checkpoint`` region's input, all checkpointing keeps of the region
``unknown``        the op's name. Unknown producers are always kept lossless.
=================  ==================================================================================
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import torch
from torch import nn

OP_CLASSES = ("linear", "norm", "attention", "activation", "mul", "cast", "embedding", "cross_entropy",
              "dropout", "checkpoint", "unknown")

_MATMUL_OPS = {"linear", "addmm", "mm", "matmul", "bmm", "baddbmm", "addmv", "mv"}
ACTIVATION_OPS = {"silu", "gelu", "relu", "tanh", "sigmoid", "mish", "softplus", "elu", "leaky_relu", "hardswish",
                  "hardsigmoid", "glu", "selu", "celu", "relu6", "gelu_tanh"}
_NORM_OPS = {"layer_norm", "rms_norm", "group_norm", "batch_norm", "instance_norm"}
_CAST_OPS = {"to", "type", "float", "half", "bfloat16", "double", "type_as"}
_SDPA_OPS = {"scaled_dot_product_attention"}
_LOSS_OPS = {"cross_entropy", "log_softmax", "nll_loss"}
_ACT_MODULE = re.compile(r"(Activation|GELU|SiLU|ReLU|Tanh|Sigmoid|Mish|Swish|Softplus)", re.IGNORECASE)
_LAYER = re.compile(r"^(.*?\.\d+)(\.|$)")


@dataclass(frozen=True, slots=True)
class SaveSite:
    """Where a saved tensor comes from: enough for a policy to pick a codec."""

    op: str  # torch-level op that saved it, e.g. "linear"
    op_class: str  # one of OP_CLASSES
    role: str  # see the module docstring
    module: str  # qualified name of the innermost module ("" for the outermost)
    module_class: str
    producer: str  # op that produced the tensor, "" if unknown (e.g. a model input)
    dtype: torch.dtype
    shape: tuple[int, ...]
    # what the accountant asks of every entry it counts, read as fields (a property was a Python call each time):
    layer: str = field(init=False, repr=False, compare=False)  # model.layers.3 for model.layers.3.mlp.up_proj
    module_pattern: str = field(init=False, repr=False, compare=False)  # layer indices as ``*``, to sum over layers

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer", _layer_of(self.module))  # the module itself when no index appears
        object.__setattr__(self, "module_pattern", _pattern_of(self.module))


# The accountant asks both of every admitted entry, and a model has few module names: compute each once.
@functools.lru_cache(maxsize=4096)
def _layer_of(module: str) -> str:
    m = _LAYER.match(module)
    return m.group(1) if m else (module or "(root)")


@functools.lru_cache(maxsize=4096)
def _pattern_of(module: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", module) or "(root)"


def _producer(t: object) -> tuple[str, str]:
    return getattr(t, "_hyclora_producer", ("", "")) if isinstance(t, torch.Tensor) else ("", "")


def _same_tensor(a: object, b: torch.Tensor) -> bool:
    """Same data: storage and offset agree (ops often save a reshaped view of their argument, e.g. matmul)."""
    return (isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
            and a.storage_offset() == b.storage_offset())


def _is_activation(prod: tuple[str, str]) -> bool:
    return prod[0] in ACTIVATION_OPS or bool(prod[1] and _ACT_MODULE.search(prod[1]))


def classify(t: torch.Tensor, op: str, args: tuple, module: str, module_class: str,
             is_param, trainable: bool = False) -> tuple[str, str]:
    """Return ``(op_class, role)`` for tensor ``t`` saved by ``op`` called with ``args`` inside ``module``.

    ``is_param`` tells weights from activations; ``trainable`` says the innermost module owns a trainable
    parameter (a linear layer that is trained but not named like peft's adapters).
    """
    if op == "checkpoint":  # set by the engine from the caller's frame (tracking.checkpoint_region)
        return "checkpoint", "input"
    tensor_args = [a for a in args if isinstance(a, torch.Tensor)]
    in_attention = "Attention" in module_class or "Attn" in module_class
    in_norm = "Norm" in module_class
    if op in _SDPA_OPS or op.startswith("_scaled_dot_product"):
        return "attention", _sdpa_role(t, tensor_args)
    if op in _MATMUL_OPS and any(is_param(a) for a in tensor_args):
        return "linear", _linear_role(module, trainable)
    if op in _NORM_OPS or (in_norm and op not in _CAST_OPS):
        return "norm", _norm_role(t, op, tensor_args, is_param)
    if in_attention:
        if op in _MATMUL_OPS:
            from_probs = [_producer(a)[0] in {"softmax", "dropout"} for a in tensor_args]
            if not any(from_probs):
                return "attention", "scores"
            return "attention", "probs" if any(f and _same_tensor(a, t) for f, a in zip(from_probs, tensor_args)) \
                else "value"
        if op in {"softmax", "dropout"}:
            return "attention", op
        if op == "mul":
            return "mul", "rope"
    if op in ACTIVATION_OPS or _ACT_MODULE.search(module_class):
        return "activation", op
    if op == "mul":
        if any(_is_activation(_producer(a)) for a in tensor_args):
            return "mul", "swiglu"
        return "mul", "elementwise"
    if op in _CAST_OPS:
        return "cast", op
    if op == "embedding" or "Embedding" in module_class:
        return "embedding", "indices" if not t.is_floating_point() else "internal"
    if op in _LOSS_OPS:
        if not t.is_floating_point():
            return "cross_entropy", "target"
        return "cross_entropy", "log_softmax" if t.dim() >= 2 else "internal"
    if op in {"dropout", "feature_dropout"}:
        return "dropout", "mask"
    return "unknown", op


def _linear_role(module: str, trainable: bool) -> str:
    parts = module.split(".")
    if "lora_A" in parts:
        return "lora_a_input"
    if "lora_B" in parts:
        return "lora_b_input"
    return "trainable_input" if trainable else "base_input"


def _sdpa_role(t: torch.Tensor, tensor_args: list) -> str:
    for role, a in zip(("query", "key", "value"), tensor_args[:3]):
        if _same_tensor(a, t):
            return role
    if len(tensor_args) >= 3 and t.is_floating_point():
        q, v = tensor_args[0], tensor_args[2]
        if t.dtype == q.dtype and tuple(t.shape) == tuple(q.shape[:-1]) + (v.shape[-1],):
            return "output"
        # flash and CPU flash: (B, H, L); cuDNN: (B, H, L, 1). Missing the latter kept cuDNN's exact logsumexp
        # beside recomputed q/k: an inconsistent softmax in backward (SmolLM2, 4-bit q/k: cosine 0.992 vs 0.999)
        if t.dtype == torch.float32 and (t.dim() == q.dim() - 1 or (t.dim() == q.dim() and t.shape[-1] == 1)):
            return "logsumexp"
    return "internal"


def _norm_role(t: torch.Tensor, op: str, tensor_args: list, is_param) -> str:
    if t.dim() == 0 or t.shape[-1] == 1:
        return "stats"
    if op == "mul" and any(is_param(a) for a in tensor_args):
        return "normalized"
    if op in _NORM_OPS and tensor_args and not _same_tensor(tensor_args[0], t):
        return "stats"
    return "input"


def is_trainable_module(module: nn.Module | None) -> bool:
    return module is not None and any(p.requires_grad for p in module.parameters(recurse=False))
