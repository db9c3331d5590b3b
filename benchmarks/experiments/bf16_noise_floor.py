"""bf16's noise floor for LoRA gradients: exact autograd against exact autograd whose LoRA products are computed in
fp64 and rounded (the same math, other roundings), the tests' tiny random Llama (GQA, r=8, B drawn at random), bf16,
on the CPU. Session 49: the scale against which the LoRA branch and norm nodes' kernels (fp32 sums in another order)
are judged.

    python benchmarks/experiments/bf16_noise_floor.py [LAYERS]     # 4: 6.3e-3 relative L2; 30: 1.4e-2"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hyclora_hooks.abtest import grad_fidelity  # noqa: E402
from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_llama  # noqa: E402

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 4
model = add_lora(tiny_llama(layers=layers))
batch = random_batch(model.config.vocab_size, batch=2, seq=64)


def grads():
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    return lora_grads(model)


exact = grads()
for name, m in model.named_modules():
    if name.endswith(("lora_A.default", "lora_B.default")):
        m.forward = (lambda m: lambda x: (x.double() @ m.weight.double().t()).to(x.dtype))(m)
cos, rel = grad_fidelity(grads(), exact)
print(f"layers {layers}: relative L2 {rel:.3e}, cosine {cos:.6f}")
