#!/usr/bin/env python3
"""mil.dtfd.parity: DTFD-MIL in slidestream against the same model in PyTorch.

The PyTorch side is written here from specs/methods.md §5 and the reference's modules (state_dict
names as hrzhang1123/DTFD-MIL saves them: {'classifier', 'dim_reduction', 'attention',
'att_classifier'}, flattened with '.' into root datasets, the naming lib/mil/dtfd.c uses). For
each configuration it seeds the modules (torch's default Linear init, then the attention output
weights sharpened x8 so pseudo-bag attention is far from uniform), writes them as a
slidestream-mil checkpoint, and writes a few bags with the pseudo-bag order to use (the C side
sets it with ss_mil_dtfd_set_next_order) and the expected tensors:
  train: tier-2 logits, attention (softmax over all cells of the tier-1 scores), loss0, loss1 and
         the gradient of every parameter after (loss0 + loss1).backward() with the tier-2 input
         detached (tier 1 learns from loss0 only, tier 2 from loss1 only);
  eval:  tier-2 logits and attention on the contiguous partition np.array_split(arange(n), M).
M = min(groups, n). Then it runs the C driver (mil_dtfd_parity CKPT BAGS), whose exit code is the
verdict. Exits 77 (skip) when torch, numpy or h5py cannot be imported.

usage: dtfd_parity.py PATH/mil_dtfd_parity OUT_DIR
"""
import os
import subprocess
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print(f"skipping: {e} (with {sys.executable})")
    sys.exit(77)


class Classifier1fc(nn.Module):
    def __init__(self, width, classes=2):
        super().__init__()
        self.fc = nn.Linear(width, classes)

    def forward(self, v):
        return self.fc(v)


class DimReduction(nn.Module):
    def __init__(self, dim, width):
        super().__init__()
        self.fc1 = nn.Linear(dim, width, bias=False)

    def forward(self, x):
        return F.relu(self.fc1(x))


class GatedAttention(nn.Module):
    """Raw scores (n,): w^T [tanh(V h + b) * sigmoid(U h + c)] + b_w."""

    def __init__(self, width, attn):
        super().__init__()
        self.attention_V = nn.Sequential(nn.Linear(width, attn), nn.Tanh())
        self.attention_U = nn.Sequential(nn.Linear(width, attn), nn.Sigmoid())
        self.attention_weights = nn.Linear(attn, 1)

    def forward(self, h):
        return self.attention_weights(self.attention_V(h) * self.attention_U(h)).squeeze(1)


class AttentionWithClassifier(nn.Module):
    def __init__(self, width, attn):
        super().__init__()
        self.attention = GatedAttention(width, attn)
        self.classifier = Classifier1fc(width)

    def forward(self, feats):
        beta = torch.softmax(self.attention(feats), dim=0)
        return self.classifier((beta.unsqueeze(1) * feats).sum(0, keepdim=True)).squeeze(0)


class DTFD(nn.Module):
    def __init__(self, dim, width, attn, groups):
        super().__init__()
        self.groups = groups
        # construction order of the reference's script
        self.classifier = Classifier1fc(width)
        self.attention = GatedAttention(width, attn)
        self.dim_reduction = DimReduction(dim, width)
        self.att_classifier = AttentionWithClassifier(width, attn)

    def named_tensors(self):
        """The slidestream table: the saved dict's modules in its order, '.'-flattened."""
        for mod in ("classifier", "dim_reduction", "attention", "att_classifier"):
            for k, v in getattr(self, mod).state_dict(keep_vars=True).items():
                yield f"{mod}.{k}", v

    def forward(self, x, order, y=None):
        """order: the cells in pseudo-bag order. Returns tier-2 logits, attention over all
        cells, and (with y) loss0, loss1."""
        n = x.shape[0]
        h = self.dim_reduction(x)
        e = self.attention(h)
        feats, preds = [], []
        for idx in np.array_split(np.asarray(order), min(self.groups, n)):
            idx = torch.as_tensor(idx, dtype=torch.long)
            a = torch.softmax(e[idx], dim=0)
            f = (a.unsqueeze(1) * h[idx]).sum(0, keepdim=True)
            feats.append(f)
            preds.append(self.classifier(f))
        feats, preds = torch.cat(feats), torch.cat(preds)
        logits = self.att_classifier(feats.detach())  # tier 2 does not train tier 1
        att = torch.softmax(e, dim=0)
        if y is None:
            return logits, att
        label = torch.full((preds.shape[0],), y, dtype=torch.long)
        loss0 = F.cross_entropy(preds, label)
        loss1 = F.cross_entropy(logits.unsqueeze(0), label[:1])
        return logits, att, loss0, loss1


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy()


def make_case(out, tag, dim, width, attn, groups, sizes, seed):
    torch.manual_seed(seed)
    model = DTFD(dim, width, attn, groups)
    with torch.no_grad():
        model.attention.attention_weights.weight.mul_(8)
        model.att_classifier.attention.attention_weights.weight.mul_(8)
    ckpt, bags = os.path.join(out, f"{tag}_model.h5"), os.path.join(out, f"{tag}_bags.h5")
    with h5py.File(ckpt, "w") as f:
        for name, t in model.named_tensors():
            f.create_dataset(name, data=f32(t))
        f.attrs["format"] = "slidestream-mil"
        f.attrs["arch"] = "dtfd"
        for k, v in dict(dim=dim, hidden=width, attn=attn, heads=8, protos=10, groups=groups,
                         proto_pred=0, inst_pred=0).items():
            f.attrs[k] = float(v)
    rng = np.random.default_rng(seed)
    with h5py.File(bags, "w") as f:
        f.attrs["count"] = len(sizes)
        for b, n in enumerate(sizes):
            g = f.create_group(f"bag{b}")
            x = torch.from_numpy(rng.normal(0.2, 1.5, size=(n, dim)).astype(np.float32))
            y = b % 2
            order = rng.permutation(n).astype(np.int32)
            model.zero_grad(set_to_none=False)
            logits, att, loss0, loss1 = model(x, order, y)
            (loss0 + loss1).backward()
            g.attrs["y"] = y
            g["x"], g["order"] = f32(x), order
            g["logits_train"], g["attention_train"] = f32(logits), f32(att)
            g["loss0"], g["loss1"] = np.float64(loss0.item()), np.float64(loss1.item())
            for name, t in model.named_tensors():
                g[f"grads/{name}"] = f32(t.grad)
            with torch.no_grad():
                logits, att = model(x, np.arange(n))
            g["logits_eval"], g["attention_eval"] = f32(logits), f32(att)
            print(f"{tag} bag{b}: n {n} y {y} loss0 {loss0.item():.6f} loss1 {loss1.item():.6f} "
                  f"max attention {att.max().item():.4f}")
    return ckpt, bags


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    driver, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    cases = [
        # the defaults (hidden 512, attention 128, 4 pseudo-bags); bags cross the eval block
        # (1024 cells) and the backward block (4096)
        ("default", 48, 512, 128, 4, [1, 3, 7, 300, 5000], 20261202),
        # another shape: 3 pseudo-bags, narrow layers
        ("narrow", 20, 64, 16, 3, [2, 5, 64, 1025], 7),
    ]
    rc = 0
    for tag, dim, width, attn, groups, sizes, seed in cases:
        ckpt, bags = make_case(out, tag, dim, width, attn, groups, sizes, seed)
        r = subprocess.run([driver, ckpt, bags])
        print(f"{tag}: driver exit {r.returncode}")
        rc = rc or r.returncode
    return 1 if rc else 0


if __name__ == "__main__":
    sys.exit(main())
