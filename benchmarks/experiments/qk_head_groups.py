"""(Session 6, CPU, ~2 min) SmolLM2 + KJV, 4 x 256 tokens: q/k after RoPE of all 30 layers quantized at 4 bits by
variants of per-channel token groups; relative error and cosine of the q/k gradients through SDPA (random v and dO)
against exact. lib_* = the rows x D memory-order view (heads mixed, before NOTE [Lifetimes] rule 12); merged_* / logical_* =
per (head, channel) over tokens; pre_* = quantized before RoPE, RoPE re-applied."""
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, ".")
from transformers.models.llama import modeling_llama as ml
from hyclora_hooks import zoo, corpus
from hyclora_hooks.kernels.quant import quantize_ref, dequantize_ref
from hyclora_hooks.engine import memory_order
m = zoo.smollm2(); model, tok = m.model, m.tokenizer
train, _, _ = corpus.train_eval_batches("kjv", tok, model.config.vocab_size, batch=4, seq=256, n_train=1, n_eval=0)
cap = []; orig = ml.apply_rotary_pos_emb
def rec(q, k, cos, sin, *a, **kw):
    qr, kr = orig(q, k, cos, sin, *a, **kw); cap.append((q, k, cos, sin, qr, kr)); return qr, kr
ml.apply_rotary_pos_emb = rec
with torch.no_grad(): model(input_ids=train[0]["input_ids"])
q, k, c, s, qr, kr = cap[0]
print("q_t strides", q.stride(), "q_rope", qr.shape, qr.stride(), "k_rope", kr.stride(), "cos", c.shape, c.stride())
def rope(x, cos, sin): return ((x * cos.unsqueeze(1)) + (ml.rotate_half(x) * sin.unsqueeze(1))).to(x.dtype)
def lib(x, g):  # what the library does: memory order view, rows x last dim
    mem, perm = memory_order(x)
    d = dequantize_ref(quantize_ref(mem, 4, g, False, "token_group"))
    return d if perm is None else d.permute(perm)
def merged(x, g):  # memory order with (H, D) merged into channels
    mem, perm = memory_order(x)
    d = dequantize_ref(quantize_ref(mem.reshape(mem.shape[0], mem.shape[1], -1), 4, g, False, "token_group")).reshape(mem.shape)
    return d if perm is None else d.permute(perm)
def logical(x, g): return dequantize_ref(quantize_ref(x.contiguous(), 4, g, False, "token_group"))
def grads(q, k, v, do):
    q, k, v = (t.float().requires_grad_() for t in (q, k, v))
    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).backward(do)
    return torch.cat([q.grad.flatten(), k.grad.flatten()])
V = {"lib_t64": lambda x, xr, c, s: lib(xr, 64), "merged_t64": lambda x, xr, c, s: merged(xr, 64),
     "logical_t64": lambda x, xr, c, s: logical(xr, 64), "merged_t32": lambda x, xr, c, s: merged(xr, 32),
     "lib_t16": lambda x, xr, c, s: lib(xr, 16),
     "pre_merged_t64": lambda x, xr, c, s: rope(merged(x, 64), c, s), "pre_merged_t32": lambda x, xr, c, s: rope(merged(x, 32), c, s)}
res = {n: [] for n in V}; err = {n: [] for n in V}
torch.manual_seed(0)
for li, (q, k, c, s, qr, kr) in enumerate(cap):
    v = torch.randn(kr.shape); do = torch.randn(qr.shape); g0 = grads(qr, kr, v, do)
    for n, f in V.items():
        qa, ka = f(q, qr, c, s), f(k, kr, c, s)
        res[n].append(F.cosine_similarity(grads(qa, ka, v, do), g0, 0).item())
        err[n].append(((qa - qr).float().norm() / qr.float().norm()).item())
for n in V:
    print(f"{n:15s} relerr {statistics.mean(err[n]):.4f}  gradcos mean {statistics.mean(res[n]):.4f} min {min(res[n]):.4f}")
