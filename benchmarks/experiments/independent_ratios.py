"""Issue 6's ratios measured the way a user would, sharing no code with ``tools/bench_step.py`` (session 15).

The issue is judged by rerunning the benchmark and by "the same ratios measured by a separate script". This is
such a script, written against the public API only: its own model (transformers + peft, nothing from
``hyclora_hooks.models``), ``hyclora.compress(preset, bits=...)`` with and without ``model=``, wall-clock steps
between ``torch.cuda.synchronize()`` calls, and activation memory as the allocator's growth over the forward. The
configurations run interleaved, a few steps each per round, so that a drift of the host's speed (docs/benchmarks.md:
up to 1.5x within one machine start) falls on all of them alike.

    PYTHONPATH=. python benchmarks/experiments/independent_ratios.py [--shapes 4x1024,1x8192] [--rounds 4]

On the dev CPU it runs at toy widths (``--tiny``) as a smoke test. Prints one table per shape: activation GiB,
memory ratio, median and fastest step ms, and their ratios to plain's, and the host's median time in the forward."""

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

import hyclora_hooks as hyclora


def build(tiny: bool, device: str) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    widths = dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, vocab_size=256) if tiny else \
        dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, vocab_size=32000)
    # HF's default config, KV cache on as a user would leave it (session 29: a context turns it off for its
    # training forwards, hyclora_hooks/kv_cache.py; plain builds one and never reads it). Sessions 15-28 set it off.
    cfg = LlamaConfig(num_hidden_layers=8, max_position_embeddings=8192, attn_implementation="sdpa", **widths)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    with torch.no_grad():  # peft starts B at zero; a step on zeros times nothing real
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.train()
    return model


def configs(model: torch.nn.Module) -> dict:
    """name -> (context factory, checkpointing on (``"but last"``: on for every decoder layer but the last),
    embedding output requires grad).

    HF's ``gradient_checkpointing_enable`` makes the embedding's output require grad (a forward hook that
    ``gradient_checkpointing_disable`` leaves in place): the first layer then saves more, in every later
    configuration of the process. The ``(inputs need grad)`` rows measure that set-up on purpose (HF's Trainer
    with PEFT and checkpointing has it); every other row runs without the hook."""
    def hy(bits, named=True):
        return lambda: hyclora.compress("intra_inter", model=model if named else None, bits=bits)
    return {
        "plain": (nullcontext, False, False),
        "checkpoint": (nullcontext, True, True),
        "intra_inter@2": (hy(2), False, False),
        "intra_inter@4": (hy(4), False, False),
        "intra_inter@2 no model=": (hy(2, named=False), False, False),
        "intra_inter+ckpt@2": (hy(2), True, True),
        "intra_inter+ckpt but last@2": (hy(2), "but last", True),
        "plain (inputs need grad)": (nullcontext, False, True),
        "intra_inter@2 (inputs need grad)": (hy(2), False, True),
    }


def set_up(model: torch.nn.Module, checkpoint: bool | str, input_grads: bool) -> None:
    """One row's set-up from a clean state: the hook removed first (a second ``enable_input_require_grads`` would
    overwrite the handle of the first, leaving that hook on for good; the first run of this script did so)."""
    try:
        model.disable_input_require_grads()
    except AttributeError:  # never enabled
        pass
    model.gradient_checkpointing_disable()
    if checkpoint:  # HF registers the hook itself here
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if checkpoint == "but last":  # HF reads each layer's own flag at every call
            model.get_base_model().model.layers[-1].gradient_checkpointing = False
    elif input_grads:
        model.enable_input_require_grads()


def step(model, batch, ctx, sync) -> tuple[float, int, float]:
    """One forward + backward; (wall seconds, allocator growth over the forward with the loss alive, the host's
    seconds in the forward: about the forward's own time where the device waits for the host)."""
    sync()
    before = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
    t0 = time.perf_counter()
    with ctx():
        loss = model(**batch).loss
    host = time.perf_counter() - t0
    after = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
    loss.backward()
    sync()
    seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return seconds, after - before, host


def run_shape(model, shape, rounds, per_round, device, vocab) -> None:
    b, t = shape
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (b, t), generator=g).to(device)
    batch = {"input_ids": ids, "labels": ids}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    table = configs(model)
    times = {k: [] for k in table}
    hosts = {k: [] for k in table}
    mem = {}
    for r in range(rounds + 1):  # round 0 warms up (compiles kernels, calibrates, records the replay plans)
        for name, (ctx, ckpt, input_grads) in table.items():
            set_up(model, ckpt, input_grads)
            for i in range(per_round + (6 if r == 0 else 1)):  # the first step after a switch is not timed
                s, grown, host = step(model, batch, ctx, sync)
                if r > 0 and i >= 1:
                    times[name].append(s)
                    hosts[name].append(host)
                    mem[name] = grown
    set_up(model, False, False)
    print(f"\n{b}x{t} ({rounds} rounds x {per_round} steps, interleaved)")
    print(f"{'config':<34} {'act GiB':>8} {'mem x':>7} {'median ms':>10} {'time x':>7} {'fastest ms':>11} {'best x':>7} {'host fwd ms':>12}")
    for name in table:  # the "(inputs need grad)" rows against plain in that set-up, the others against plain
        base = "plain (inputs need grad)" if name.endswith("(inputs need grad)") else "plain"
        p_med, p_min, p_mem = statistics.median(times[base]), min(times[base]), mem[base]
        med, fast, m = statistics.median(times[name]), min(times[name]), mem[name]
        print(f"{name:<34} {m / 2**30:8.3f} {p_mem / m if m else float('nan'):7.2f} {med * 1e3:10.1f} "
              f"{med / p_med:7.2f} {fast * 1e3:11.1f} {fast / p_min:7.2f} "
              f"{statistics.median(hosts[name]) * 1e3:12.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4x1024,1x8192")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="toy widths (CPU smoke test)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build(args.tiny, device)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}")
    for part in args.shapes.split(","):
        b, t = (int(n) for n in part.split("x"))
        run_shape(model, (b, t), args.rounds, args.per_round, device, model.config.vocab_size)


if __name__ == "__main__":
    main()
