"""(Session 5, CPU, ~1 min) SmolLM2 + KJV, 2 x 256 tokens: inputs of every linear/norm (the tensors that take outlier channels): of the
groups of 64 along the row that hold one of the top 0.5% channels, how many have all other values of one sign
(the only groups where counting outliers as 0 changes the grid), and the range ratio there."""
import sys, torch
sys.path.insert(0, ".")
from hyclora_hooks import zoo, corpus
loaded = zoo.load_model("smollm2")
model, tok = loaded.model, loaded.tokenizer
text = corpus.kjv_text()
ids = corpus.sequences(text, corpus.tokenize_fn(tok, 49152), [1000, 500000], 256, 4000)
x = torch.tensor(ids)
caps = []
def hook(m, inp):
    if isinstance(inp[0], torch.Tensor) and inp[0].is_floating_point():
        caps.append(inp[0].detach())
for name, m in model.named_modules():
    if type(m).__name__ in ("LlamaRMSNorm", "Linear"):
        m.register_forward_pre_hook(hook)
with torch.no_grad():
    model(input_ids=x)
tot = same = 0; ratios = []
for t in caps:
    t2 = t.reshape(-1, t.shape[-1]).float(); c = t2.shape[1]
    if c % 64: continue
    k = max(1, round(0.005 * c))
    oc = torch.topk((t2 * t2).sum(0), k).indices
    om = torch.zeros(c, dtype=torch.bool); om[oc] = True
    g = t2.view(-1, c // 64, 64); gm = om.view(c // 64, 64)
    has = gm.any(1)
    vals = g[:, has, :]; msk = gm[has][None].expand_as(vals)
    lo = torch.where(msk, torch.inf, vals).amin(-1); hi = torch.where(msk, -torch.inf, vals).amax(-1)
    one_sign = (lo > 0) | (hi < 0)
    tot += one_sign.numel(); same += one_sign.sum().item()
    if one_sign.any():
        r = (torch.maximum(hi, torch.zeros(())) - torch.minimum(lo, torch.zeros(()))) / (hi - lo)
        ratios.append(r[one_sign])
r = torch.cat(ratios) if ratios else torch.ones(1)
print(f"tensors {len(caps)}; outlier-holding groups {tot}; all other values one sign: {same} ({100*same/max(tot,1):.2f}%); range ratio there: median {r.median():.2f}, max {r.max():.2f}")
