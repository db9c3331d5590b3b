"""Dropout masks on the GPU (session 29; ``hyclora_hooks/codecs/bitmask.py``).

1. Bits: a tiny Llama (bf16, peft LoRA with ``lora_dropout=0.1``) on CUDA, where dropout saves bool masks: one
   seeded step of plain autograd against one under a policy that packs the masks and keeps everything else; the LoRA
   gradients must be equal bit for bit (the same masks), and each mask must cost an eighth of its bytes. Then the
   dropped LoRA inputs rebuilt from their masks (NOTE [Dropout recipe] in lineage.py: CUDA's ``x * keep * scale``),
   three steps recorded and replayed, against plain autograd bit for bit (``tests/test_dropout.py``'s check, on CUDA).
2. Memory and time: bench_step's Llama-2-7B-shaped model (8 layers, bf16, LoRA r16 on every linear) with
   ``lora_dropout`` 0 and 0.05 at 4x1024: activation memory (the allocator's growth over the forward, only the loss
   held) of plain and of ``intra_inter@2``, and step times (medians), masks packed (the preset) or kept (the preset
   with a first rule that keeps them; the dropped inputs are rebuilt from kept masks too).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/dropout_masks.py
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_llama  # noqa: E402
from hyclora_hooks.policy import Policy, Rule, load_policy  # noqa: E402


def seeded_step(model, batch, policy, seed):
    """(LoRA gradients, the context or None) of one step under ``policy`` (None: plain autograd), seeded."""
    torch.manual_seed(seed)
    ctx = hy.compress(policy, model=model) if policy is not None else None
    with ctx if ctx is not None else torch.enable_grad():
        loss = model(**batch).loss
    loss.backward()
    grads = lora_grads(model)
    model.zero_grad(set_to_none=True)
    return grads, ctx


def bits_check() -> None:
    model = add_lora(tiny_llama(dtype=torch.bfloat16), dropout=0.1).cuda().train()
    batch = {k: v.cuda() for k, v in random_batch(model.config.vocab_size, batch=2, seq=64).items()}
    masks = Policy(name="masks", rules=(Rule(codec="bitmask", op_class="dropout"), Rule(codec="keep", op_class=("*",))))
    exact, _ = seeded_step(model, batch, None, 3)
    got, ctx = seeded_step(model, batch, masks, 3)
    rows = [r for r in ctx.report().by_op if r["codec"] == "bitmask"]
    print(f"bits: LoRA gradients equal to plain autograd's: {torch.equal(exact, got)}; masks "
          f"{sum(r['count'] for r in rows)}, {sum(r['activation_bytes'] for r in rows)} bytes -> "
          f"{sum(r['stored_bytes'] for r in rows)} stored")

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"]  # down_proj's is over the cost bound
    model = add_lora(tiny_llama(dtype=torch.bfloat16), dropout=0.3, targets=targets).cuda().train()
    model.enable_input_require_grads()
    rebuilt = Policy(name="rebuilt", inter=True, rules=(
        Rule(codec="bitmask", op_class="dropout"),
        Rule(codec="quant", op_class="linear", role="lora_a_input", params={"bits": 2}),
        Rule(codec="keep", op_class=("*",))))
    for seed in range(3):
        got, ctx = seeded_step(model, batch, rebuilt, seed)
        exact, _ = seeded_step(model, batch, None, seed)
        rows = {(r["role"], r["codec"]) for r in ctx.report().by_op if r["op"] == "linear"}
        print(f"rebuilt dropped inputs, step {seed}: gradients equal to plain autograd's: {torch.equal(got, exact)}; "
              f"every pack replayed: {ctx.replayed_packs == ctx.report().packs}; linear rows {sorted(rows)}")


def seven_b(dropout: float) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=8, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096,
                      attn_implementation="sdpa", use_cache=False)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    return add_lora(model, r=16, alpha=32, dropout=dropout).cuda().train()


def measure(model, batch, policy, steps=8):
    acts, times = [], []
    for i in range(steps + 6):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        ctx = hy.compress(policy, model=model, bits=2) if policy is not None else None
        with ctx if ctx is not None else torch.enable_grad():
            loss = model(**batch).loss
        act = torch.cuda.memory_allocated() - before
        loss.backward()
        torch.cuda.synchronize()
        if i >= 6:
            acts.append(act)
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return statistics.median(acts), statistics.median(times)


def main() -> None:
    bits_check()
    preset = load_policy("intra_inter")
    kept = Policy(name="intra_inter, masks kept", inter=True, knobs=preset.knobs,
                  rules=(Rule(codec="keep", op_class="dropout", reason="as before session 29"),) + preset.rules)
    ids = torch.randint(0, 32000, (4, 1024), generator=torch.Generator().manual_seed(0)).cuda()
    batch = {"input_ids": ids, "labels": ids}
    print(f"\n{'lora_dropout':>12} {'config':28} {'act MiB':>9} {'mem x':>6} {'step ms':>8} {'time x':>6}")
    for p in (0.0, 0.05):
        model = seven_b(p)
        plain_act, plain_t = measure(model, batch, None)
        for name, policy in (("plain", None), ("intra_inter@2", "intra_inter"), ("intra_inter@2, masks kept", kept)):
            act, t = (plain_act, plain_t) if policy is None else measure(model, batch, policy)
            print(f"{p:12} {name:28} {act / 2**20:9.1f} {plain_act / act:6.2f} {t * 1e3:8.1f} {t / plain_t:6.2f}",
                  flush=True)
            if p == 0.0 and policy is not None:
                break  # no masks without dropout: the two policies are the same
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
