"""bf16's noise floor for LoRA gradients: exact autograd against exact autograd whose LoRA products are computed in
fp64 and rounded (the same math, other roundings), a tiny random Llama (GQA, r=8), bf16, on the CPU. Session 49: the
scale against which the LoRA branch and norm nodes' kernels (fp32 sums in another order) are judged.

    python benchmarks/experiments/bf16_noise_floor.py [LAYERS]     # 4: 3.7e-3 relative L2; 30: 8.4e-3"""
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
layers = int(sys.argv[1]) if len(sys.argv) > 1 else 4
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
                  num_hidden_layers=layers, vocab_size=128, attn_implementation="sdpa")
model = get_peft_model(LlamaForCausalLM(cfg).to(torch.bfloat16), LoraConfig(r=8, lora_alpha=16,
    target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]))
with torch.no_grad():
    for n, p in model.named_parameters():
        if "lora_B" in n: p.normal_(0, 0.02)
params = [p for p in model.parameters() if p.requires_grad]
ids = torch.randint(0, 128, (2, 64))
def grads():
    model(input_ids=ids, labels=ids).loss.backward()
    g = torch.cat([p.grad.flatten().double() for p in params]); model.zero_grad(set_to_none=True); return g
exact = grads()
lin = [m for n, m in model.named_modules() if (n.endswith("lora_A.default") or n.endswith("lora_B.default"))]
for m in lin:
    m.forward = (lambda m: lambda x: (x.double() @ m.weight.double().t()).to(x.dtype))(m)
other = grads()
print(f"layers {layers}: rel {((other-exact).norm()/exact.norm()).item():.3e} cos {torch.nn.functional.cosine_similarity(other, exact, 0).item():.6f}")
