#!/usr/bin/env python3
"""mil.abmil.parity / mil.abmilx.parity: slidestream's gated ABMIL and ABMILX against PyTorch.

For each configuration this script builds the architecture as a PyTorch module of its own
(written from specs/methods.md §1-§2 and §4.1, with the reference modules' state_dict names:
CLAM-SB's for gated ABMIL, DAttentionX's for ABMILX), initialises it as the reference does
(Xavier normal Linear weights, zero biases, LayerNorm 1/0; seeded), then moves every bias and
LayerNorm parameter off its initial value so that their gradients are tested too. It writes
  model_<i>.h5  the float32 weights as a slidestream-mil checkpoint (one root dataset per
                state_dict key, the root attributes ss_mil_save writes)
  bags_<i>.h5   bags of n = 1, 7, 300 cells (float32) with labels, and PyTorch's logits,
                attention toward class 1, cross-entropy loss and every parameter's gradient,
                computed in float64 from those float32 values
and runs the C driver (mil_parity) on them, which fails on any element beyond
|c - r| <= RTOL |r| + ATOL · max|r| (see mil_parity.c). Exit 77 when torch/h5py are missing.

Tolerances, measured on this machine (slidestream float32 against PyTorch float64): the worst
|c - r| / max|r| of any tensor (logits, attention, loss, every gradient) was 1e-6 for ABMIL
and ABMILX alike, except the biases whose exact gradient is 0 (attention_c.bias, fc2.bias:
they shift every score alike), held to 1e-2 of the bag's largest gradient, at 3e-6 of it.
"""
import argparse
import os
import subprocess
import sys

RTOL = 1e-5
ATOL = 1e-5

CONFIGS = {
    "abmil": [dict(dim=48, hidden=64, attn=24, heads=8)],
    "abmilx": [dict(dim=48, hidden=64, attn=0, heads=4), dict(dim=40, hidden=48, attn=12, heads=2)],
}
BAGS = [(1, 1), (7, 0), (300, 1)]  # (cells, label)


def build(arch, cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class GatedScore(nn.Module):
        """tanh branch ⊙ sigmoid branch -> one score per cell (CLAM's Attn_Net_Gated names)."""

        def __init__(self, width, attn):
            super().__init__()
            self.attention_a = nn.Sequential(nn.Linear(width, attn), nn.Tanh())
            self.attention_b = nn.Sequential(nn.Linear(width, attn), nn.Sigmoid())
            self.attention_c = nn.Linear(attn, 1)

        def forward(self, h):
            return self.attention_c(self.attention_a(h) * self.attention_b(h))

    class GatedABMIL(nn.Module):
        """fc + ReLU, gated attention, softmax over cells, pooled, Linear(hidden, 2)."""

        def __init__(self, dim, hidden, attn):
            super().__init__()
            self.attention_net = nn.Sequential(
                nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.0), GatedScore(hidden, attn))
            self.classifiers = nn.Linear(hidden, 2)

        def forward(self, x):
            h = self.attention_net[:3](x)
            alpha = torch.softmax(self.attention_net[3](h).squeeze(-1), dim=0)
            return self.classifiers(alpha @ h), alpha

    class ScoreMLP(nn.Module):
        """The per-instance score of every head: d -> D' (GELU) -> 1, biases on."""

        def __init__(self, d, width):
            super().__init__()
            self.fc1 = nn.Linear(d, width)
            self.fc2 = nn.Linear(width, 1)

        def forward(self, t):
            return self.fc2(F.gelu(self.fc1(t)))

    class APlus(nn.Module):
        """A + softmax_keys(Q K^T / sqrt d) (w_v A), Q|K from LN(H_h) W_qk, per head."""

        def __init__(self, d):
            super().__init__()
            self.d = d
            self.qk = nn.Linear(d, 2 * d, bias=False)
            self.v = nn.Linear(1, 1, bias=False)
            self.norm_x = nn.LayerNorm(d)

        def forward(self, hh, a):  # hh (heads, n, d), a (heads, n, 1)
            q, k = self.qk(self.norm_x(hh)).split(self.d, dim=-1)
            p = torch.softmax(q @ k.transpose(-1, -2) * self.d ** -0.5, dim=-1)
            return a + p @ self.v(a)

    class ABMILX(nn.Module):
        def __init__(self, dim, width, heads, attn):
            super().__init__()
            self.heads, self.d = heads, width // heads
            self.attn_plus_fn = APlus(self.d)
            self.feature = nn.Sequential(nn.Linear(dim, width), nn.ReLU())
            self.attention = ScoreMLP(self.d, attn or self.d)
            self.proj = nn.Linear(width, width)
            self.classifier = nn.Linear(width, 2)

        def forward(self, x):
            hh = self.feature(x).view(x.shape[0], self.heads, self.d).transpose(0, 1)
            a = self.attn_plus_fn(hh, self.attention(hh)).squeeze(-1)  # (heads, n)
            alpha = torch.softmax(a, dim=1)
            z = torch.einsum("hn,hnd->hd", alpha, hh).reshape(-1)
            return self.classifier(self.proj(z)), alpha.mean(0)

    if arch == "abmil":
        model = GatedABMIL(cfg["dim"], cfg["hidden"], cfg["attn"])
    else:
        model = ABMILX(cfg["dim"], cfg["hidden"], cfg["heads"], cfg["attn"])
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_normal_(mod.weight)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.LayerNorm):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model


def write_checkpoint(path, arch, cfg, model, h5py):
    import numpy as np
    with h5py.File(path, "w") as f:
        for key, t in model.state_dict().items():
            f.create_dataset(key, data=t.detach().float().numpy())
        f.attrs["format"] = "slidestream-mil"
        f.attrs["arch"] = arch
        for k, v in dict(dim=cfg["dim"], hidden=cfg["hidden"], attn=cfg["attn"],
                         heads=cfg["heads"], protos=10, groups=4, proto_pred=0,
                         inst_pred=0).items():
            f.attrs[k] = np.int64(v)


def write_bags(path, model, cfg, seed, torch, h5py):
    import numpy as np
    import torch.nn.functional as F
    model64 = model.double()
    gen = torch.Generator().manual_seed(seed)
    with h5py.File(path, "w") as f:
        f.attrs["count"] = np.int32(len(BAGS))
        f.attrs["rtol"] = RTOL
        f.attrs["atol"] = ATOL
        f.attrs["state_dict"] = np.bytes_("\n".join(model.state_dict().keys()))
        for b, (n, y) in enumerate(BAGS):
            x = torch.randn(n, cfg["dim"], generator=gen, dtype=torch.float32)
            model64.zero_grad()
            logits, att = model64(x.double())
            loss = F.cross_entropy(logits[None], torch.tensor([y]))
            loss.backward()
            g = f.create_group(f"bag{b}")
            g.attrs["label"] = np.int32(y)
            g.create_dataset("x", data=x.numpy())
            g.create_dataset("logits", data=logits.detach().numpy())
            g.create_dataset("attention", data=att.detach().numpy())
            g.create_dataset("loss", data=loss.detach().numpy())
            gg = g.create_group("grad")
            for name, p in model64.named_parameters():
                gg.create_dataset(name, data=p.grad.numpy())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--driver", required=True, help="the mil_parity program")
    ap.add_argument("--dir", required=True, help="where the checkpoints and bags go")
    args = ap.parse_args()
    try:
        import h5py
        import numpy  # noqa: F401
        import torch
    except Exception as e:  # noqa: BLE001 — any import failure means "cannot run here"
        print(f"SKIP: mil.{args.arch}.parity needs torch and h5py ({e})")
        return 77
    os.makedirs(args.dir, exist_ok=True)
    torch.set_num_threads(1)
    rc = 0
    for i, cfg in enumerate(CONFIGS[args.arch]):
        torch.manual_seed(1000 + i)
        model = build(args.arch, cfg)
        ckpt = os.path.join(args.dir, f"{args.arch}_model_{i}.h5")
        bags = os.path.join(args.dir, f"{args.arch}_bags_{i}.h5")
        write_checkpoint(ckpt, args.arch, cfg, model, h5py)
        write_bags(bags, model, cfg, 2000 + i, torch, h5py)
        print(f"== {args.arch} config {i}: {cfg}", flush=True)
        r = subprocess.run([args.driver, ckpt, bags])
        if r.returncode:
            print(f"FAIL: mil.{args.arch}.parity config {i} (driver exit {r.returncode})")
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
