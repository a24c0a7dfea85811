#!/usr/bin/python3
"""mil.pamil.parity: slidestream's PAMIL against a PyTorch module of the same model.

usage: pamil_parity.py DRIVER WORKDIR [--noise]

The module below is written for this test from specs/methods.md §3.1/§3.3 (SLAM-AGS's
PAMIL.py, binary bags): its state_dict has that module's names and order, and it carries the
two fixes slidestream makes (include/slidestream/mil_pamil.h): (a) the instance loss ranks
class c's cells by class c's attention row; (b) prototype scores are scaled by max_k |s_k|.
The classifiers use torch.nn.utils.weight_norm (weight_g, weight_v) — Debian's torch 1.13 has
no parametrizations.weight_norm, and that newer form loads weight_g/weight_v state_dicts too.

For each configuration (default; proto_pred + inst_pred; proto_pred with every prototype score
negative) the seeded module's float32 weights are written as a slidestream MIL checkpoint
(ckpt.h5: one root dataset per state_dict key, the root attributes ss_mil_save writes), and
ref.h5 holds bags of 1, 7, 300 and 2500 cells (2500: several of the C eval's blocks) with
their labels and the expected logits, class-1 attention, total loss and every parameter's
gradient, computed in float64 from those float32 weights, and beside each (noise/...) how far
the same module run in float32 lands from it. The C driver (pamil_parity.c) loads the
checkpoint and compares everything within RTOL |r| + ATOL max|r| + NOISE x that float32
distance; any element out of tolerance fails the process naming the tensor and element.

--noise: write the files but, instead of running the driver, print float32 PyTorch's share of
the RTOL/ATOL budget per tensor (why the NOISE term is there: some gradients are sums with
heavy cancellation that float32 cannot resolve to RTOL/ATOL).

Exit 77 (skip) when torch, numpy or h5py cannot be imported.
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
    print(f"SKIP: {sys.executable} cannot import {e.name} (mil.pamil.parity needs torch, numpy "
          "and h5py: python3-torch, python3-h5py)")
    sys.exit(77)

NC = 2
K_SAMPLE = 8
LAMBDA_CLST, LAMBDA_PC, LAMBDA_ER, LAMBDA_INST, PROTO_WEIGHT = 0.005, 0.005, 0.1, 0.5, 0.5
DIM = 64
RTOL = ATOL = 1e-4  # as pamil_parity.c, for the --noise table
BAGS = [(1, 1), (7, 0), (300, 1), (2500, 0)]  # (cells, label)
CONFIGS = [  # name, proto_pred, inst_pred, push every prototype score below 0, seed
    ("default", 0, 0, False, 1),
    ("proto_inst", 1, 1, False, 2),
    ("negative", 1, 1, True, 3),
]


class GatedPrototypeAttention(nn.Module):
    """S (n, K) = gate(h) · tanh-projection(prototypes)^T; per-class scores S W_c^T + b_c."""

    def __init__(self, hidden, attn, protos):
        super().__init__()
        self.attention_a = nn.Sequential(nn.Linear(hidden, attn), nn.Tanh())
        self.attention_b = nn.Sequential(nn.Linear(hidden, attn), nn.Sigmoid())
        self.attention_c = nn.Linear(protos, NC)

    def forward(self, protos, h):
        sim = self.attention_b(h) @ self.attention_a(protos).t()
        return sim, self.attention_c(sim)


class PamilReference(nn.Module):
    def __init__(self, dim, hidden=512, attn=256, protos=10, proto_pred=False, inst_pred=False):
        super().__init__()
        self.proto_pred, self.inst_pred = proto_pred, inst_pred
        self.proto = nn.Parameter(torch.randn(protos, dim))
        self.fc = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.attention_net = GatedPrototypeAttention(hidden, attn, protos)
        self.classifiers = nn.ModuleList(
            nn.utils.weight_norm(nn.Linear(hidden, 1)) for _ in range(NC))
        if proto_pred:
            self.proto_pred_classifier = nn.Sequential(nn.Linear(hidden, NC))
        if inst_pred:
            self.instance_classifiers = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(NC))

    def scores(self, x):
        """Prototype scores s_k = max over cells of S[:, k] (to check the fixture)."""
        p = F.normalize(self.fc(self.proto), dim=1)
        h = F.normalize(self.fc(x), dim=1)
        return self.attention_net(p, h)[0].max(dim=0).values

    def forward(self, x, y):
        """Logits (1, 2), class-1 attention (n), the training loss for label y."""
        p = F.normalize(self.fc(self.proto), dim=1)
        h = F.normalize(self.fc(x), dim=1)
        sim, raw = self.attention_net(p, h)
        alpha = F.softmax(raw.t(), dim=1)  # (C, n)
        bag = F.normalize(alpha @ h, dim=1)
        logits = torch.cat([self.classifiers[c](bag[c:c + 1]) for c in range(NC)], dim=1)
        loss = 0.0
        if self.proto_pred:
            s = sim.max(dim=0).values
            top = s.abs().max()
            weights = F.softmax(s / top if top > 0 else s, dim=0)  # fix (b)
            proto_logits = self.proto_pred_classifier((weights @ p).unsqueeze(0))
            er = F.kl_div(torch.log(F.softmax(logits, dim=1) + 1e-8),
                          F.softmax(proto_logits, dim=1).detach(), reduction="batchmean")
            loss = loss + LAMBDA_ER * er
            logits = (1 - PROTO_WEIGHT) * logits + PROTO_WEIGHT * proto_logits
        target = torch.tensor([y])
        loss = loss + F.cross_entropy(logits, target)
        q = F.softmax(sim, dim=1)
        loss = loss + LAMBDA_CLST * (1 - q.max(dim=1).values.mean())
        loss = loss + LAMBDA_PC * (1 - q.max(dim=0).values.mean())
        if self.inst_pred:
            k = min(K_SAMPLE, x.shape[0])
            inst = 0.0
            for c in range(NC):
                row = alpha[c]  # fix (a): this class's own attention
                top = torch.topk(row, k).indices
                if c == y:
                    idx = torch.cat([top, torch.topk(-row, k).indices])
                    t = torch.cat([torch.ones(k), torch.zeros(k)]).long()
                else:
                    idx, t = top, torch.zeros(k).long()
                inst = inst + F.cross_entropy(self.instance_classifiers[c](h[idx]), t)
            loss = loss + LAMBDA_INST * inst / NC
        return logits, alpha[1], loss


def build(proto_pred, inst_pred, negative, seed):
    torch.manual_seed(seed)
    m = PamilReference(DIM, proto_pred=bool(proto_pred), inst_pred=bool(inst_pred))
    if negative:  # the gate of every prototype near -1: every S[n, k] < 0
        with torch.no_grad():
            m.attention_net.attention_a[0].bias -= 4.0
    return m.float()


def bags(seed):
    g = torch.Generator().manual_seed(1000 + seed)
    return [(torch.randn(n, DIM, generator=g), y) for n, y in BAGS]


def write_checkpoint(path, m, proto_pred, inst_pred):
    sd = m.state_dict()
    with h5py.File(path, "w") as f:
        for key, t in sd.items():
            f.create_dataset(key, data=t.detach().float().numpy())
        f.attrs["format"] = "slidestream-mil"
        f.attrs["arch"] = "pamil"
        for k, v in dict(dim=DIM, hidden=512, attn=256, heads=8, protos=10, groups=4,
                         proto_pred=proto_pred, inst_pred=inst_pred).items():
            f.attrs[k] = float(v)
    return list(sd.keys())


def run(m, x, y, dtype):
    mm = build_copy(m, dtype)
    logits, att, loss = mm(x.to(dtype), y)
    loss.backward()
    grads = {k: p.grad.detach().double().numpy() if p.grad is not None else
             np.zeros(tuple(p.shape)) for k, p in mm.named_parameters()}
    return (logits.detach().double().numpy().ravel(), att.detach().double().numpy(),
            float(loss), grads)


def build_copy(m, dtype):
    """A fresh module holding m's weights in dtype (weight_norm's computed weight cannot be
    deep-copied)."""
    mm = PamilReference(DIM, proto_pred=m.proto_pred, inst_pred=m.inst_pred)
    mm.load_state_dict(m.state_dict())
    return mm.to(dtype)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    driver, work = sys.argv[1], sys.argv[2]
    noise = "--noise" in sys.argv[3:]
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(2)
    failed = 0
    for name, pp, ip, negative, seed in CONFIGS:
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        m = build(pp, ip, negative, seed)
        keys = write_checkpoint(os.path.join(d, "ckpt.h5"), m, pp, ip)
        with h5py.File(os.path.join(d, "ref.h5"), "w") as f:
            f.attrs["bags"] = len(BAGS)
            f.attrs["state_dict"] = ",".join(keys)  # the reference's order
            for b, (x, y) in enumerate(bags(seed)):
                if negative:
                    s = build_copy(m, torch.float64).scores(x.double())
                    assert (s < 0).all(), f"{name}: fixture has a non-negative score {s.max()}"
                    assert torch.argmax(s / s.max()) == torch.argmin(s), "no reversal to fix"
                logits, att, loss, grads = run(m, x, y, torch.float64)
                l32, a32, loss32, g32 = run(m, x, y, torch.float32)
                g = f.create_group(f"bag{b}")
                g["x"] = x.numpy()
                g.attrs["y"] = y
                g["logits"], g["noise/logits"] = logits, np.abs(l32 - logits).max()
                g["attention"], g["noise/attention"] = att, np.abs(a32 - att).max()
                g["loss"], g["noise/loss"] = loss, abs(loss32 - loss)
                for k in keys:
                    g[f"grad/{k}"] = grads[k]
                    g[f"noise/grad/{k}"] = np.abs(g32[k] - grads[k]).max()
                if noise:
                    print(f"{name} bag {b} (n {x.shape[0]}): float32 - float64: logits "
                          f"{np.abs(l32 - logits).max():.2e}, attention "
                          f"{np.abs(a32 - att).max() / att.max():.2e} of max, loss "
                          f"{abs(loss32 - loss):.2e}; gradients (share of RTOL|r| + ATOL max|r|):")
                    for k in keys:
                        r = grads[k]
                        share = (np.abs(g32[k] - r) / (RTOL * np.abs(r) + ATOL * np.abs(r).max()
                                                        + 1e-300)).max()
                        print(f"   {k:40s} max|r| {np.abs(r).max():.2e}  share {share:.3g}")
        if noise:
            continue
        print(f"== {name}: proto_pred {pp}, inst_pred {ip}{', all scores < 0' if negative else ''}",
              flush=True)
        rc = subprocess.call([driver, d])
        if rc:
            print(f"FAIL: {name} (driver exit {rc})")
            failed += 1
    if failed:
        print(f"mil.pamil.parity: {failed} configuration(s) failed")
        return 1
    if not noise:
        print("mil.pamil.parity: every tensor within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
