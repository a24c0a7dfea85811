#!/usr/bin/python3
"""Reference tensors for nn.parity_resnet18 (run with Debian's /usr/bin/python3: torch, h5py).

Builds torchvision's resnet18 (10 classes) plus a projection head Linear-ReLU-Linear registered
as `projector`, with seeded random weights and perturbed BN affine/running statistics, and
writes:
  <out>/ckpt.h5  the model as a slidestream HDF5 checkpoint (one dataset per state_dict key)
  <out>/ref.h5   inputs and expected results:
     x (B,3,64,64), y (B)
     eval/{feature,logits,projection}          eval-mode forward
     train/{feature,logits,projection}         train-mode forward (batch statistics)
     loss_ce, loss_nt                          CE on fc, NT-Xent (interleaved views) on projector
     grad_ce/<name>, grad_nt/<name>            every parameter gradient of each loss
     buffers/<name>                            BN running stats after the train forward
     sgd/<name>                                params after one SGD(momentum, wd) step on grad_ce
     adam/<name>, adamw/<name>                 params after two Adam / AdamW steps (grad_ce,
                                               then grad_nt)
     ags/<name>                                params after one SGD step on the SLAM-AGS
                                               combination (PCGrad + rescaling) of the two
"""
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

B, S, CLASSES, HID, OUT = 8, 64, 10, 64, 32
TAU, LR, MOMENTUM, WD, EPS = 0.2, 0.05, 0.9, 5e-4, 1e-10
ADAM_LR, ADAM_WD = 1e-3, 1e-2


def nt_xent(z, tau):
    """SLAM-AGS NT-Xent on rows in interleaved view order (2i, 2i+1 are one image's views)."""
    n2 = z.shape[0]
    u = F.normalize(z, dim=1)
    sim = u @ u.T / tau
    logits = sim - sim.max(dim=1, keepdim=True)[0].detach()
    not_self = 1.0 - torch.eye(n2)
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(dim=1, keepdim=True))
    partner = torch.arange(n2) ^ 1
    return -log_prob[torch.arange(n2), partner].mean()


def perturb_batchnorm(model, g):
    """BN affine weights and running statistics away from their initial 1/0 (drawn from g, in
    module order), so that a checkpoint that mixed them up would show; also used by
    tests/train_parity/step_parity.py."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(1 + 0.3 * torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(3)


def flat_grads(params):
    """Concatenated gradients, zeros where a parameter got none (as the SLAM-AGS loop does)."""
    return torch.cat([torch.zeros(p.numel()) if p.grad is None else
                      p.grad.detach().clone().reshape(-1) for p in params])


def main(out):
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    model = torchvision.models.resnet18(num_classes=CLASSES)
    model.projector = nn.Sequential(nn.Linear(512, HID), nn.ReLU(), nn.Linear(HID, OUT))
    g = torch.Generator().manual_seed(99)
    perturb_batchnorm(model, g)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with h5py.File(f"{out}/ckpt.h5", "w") as f:
        for k, v in sd.items():
            f[k] = v.numpy()
        f.attrs["arch"] = "resnet18"
        f.attrs["width_multiplier"] = 1.0
        f.attrs["input_size"] = S
        f.attrs["mean"] = [0.485, 0.456, 0.406]
        f.attrs["std"] = [0.229, 0.224, 0.225]

    x = torch.randn(B, 3, S, S, generator=g)
    y = torch.randint(0, CLASSES, (B,), generator=g)
    params = [p for p in model.parameters()]
    names = [k for k, _ in model.named_parameters()]

    def heads(feat):
        return model.fc(feat), model.projector(feat)

    def encode(x):
        m = model
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
        return torch.flatten(m.avgpool(h), 1)

    r = h5py.File(f"{out}/ref.h5", "w")
    r["x"] = x.numpy()
    r["y"] = y.numpy().astype(np.int32)
    model.eval()
    with torch.no_grad():
        feat = encode(x)
        logits, proj = heads(feat)
    r["eval/feature"], r["eval/logits"], r["eval/projection"] = (
        feat.numpy(), logits.numpy(), proj.numpy())

    model.train()
    feat = encode(x)
    logits, proj = heads(feat)
    r["train/feature"] = feat.detach().numpy()
    r["train/logits"] = logits.detach().numpy()
    r["train/projection"] = proj.detach().numpy()
    for k, v in model.state_dict().items():
        if "running" in k or "num_batches" in k:
            r[f"buffers/{k}"] = v.numpy()
    loss_ce = F.cross_entropy(logits, y)
    loss_nt = nt_xent(proj, TAU)
    r["loss_ce"], r["loss_nt"] = loss_ce.item(), loss_nt.item()
    model.zero_grad()
    loss_ce.backward(retain_graph=True)
    g1 = flat_grads(params)
    for n_, p in zip(names, params):
        r[f"grad_ce/{n_}"] = np.zeros(p.shape, np.float32) if p.grad is None else p.grad.numpy()
    model.zero_grad()
    loss_nt.backward()
    g2 = flat_grads(params)
    for n_, p in zip(names, params):
        r[f"grad_nt/{n_}"] = p.grad.numpy()

    def sgd_from_start(flat, group):
        with torch.no_grad():
            for p, (k, _) in zip(params, model.named_parameters()):
                p.copy_(sd[k])
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WD)
        idx = 0
        for p in params:
            p.grad = flat[idx: idx + p.numel()].view_as(p).clone()
            idx += p.numel()
        opt.step()
        for n_, p in zip(names, params):
            r[f"{group}/{n_}"] = p.detach().numpy()

    sgd_from_start(g1, "sgd")

    # Adam and AdamW: two steps (grad_ce, then grad_nt) from the start. The C side feeds these
    # same reference gradients (Adam's ~sign(g) update would amplify last-bit differences).
    for group, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        with torch.no_grad():
            for p, (k, _) in zip(params, model.named_parameters()):
                p.copy_(sd[k])
        opt = cls(params, lr=ADAM_LR, weight_decay=ADAM_WD)
        for flat in (g1, g2):
            idx = 0
            for p in params:
                p.grad = flat[idx: idx + p.numel()].view_as(p).clone()
                idx += p.numel()
            opt.step()
        for n_, p in zip(names, params):
            r[f"{group}/{n_}"] = p.detach().numpy()
    # SLAM-AGS step (specs/methods.md §6.4), same arithmetic as the reference training loop.
    # In float64: over 11M elements float32 reductions alone move the projection coefficients
    # by ~1e-4; the C side accumulates in double, so double is the faithful oracle here.
    g1, g2 = g1.double(), g2.double()
    grads = [g1, g2]
    g_pc = [g1.clone(), g2.clone()]
    pre_norm = (g1 + g2).norm()
    for i in range(2):
        for j in range(2):
            if i == j:
                continue
            gj = grads[j]
            gj2 = (gj * gj).sum()
            if gj2.item() == 0:
                continue
            dot = (g_pc[i] * gj).sum()
            if dot < 0:
                g_pc[i] = g_pc[i] - (dot / (gj2 + EPS)) * gj
    g = g_pc[0] + g_pc[1]
    post = g.norm()
    if post.item() > 0:
        g = g * (pre_norm / (post + EPS))
    r.attrs["conflict"] = int((g1 * g2).sum().item() < 0)
    r.attrs["cosine"] = float(F.cosine_similarity(g1, g2, dim=0))
    sgd_from_start(g.float(), "ags")
    for k, v in dict(tau=TAU, lr=LR, momentum=MOMENTUM, weight_decay=WD, adam_lr=ADAM_LR,
                     adam_weight_decay=ADAM_WD).items():
        r.attrs[k] = v
    r.close()
    print(f"reference written to {out} (g1.g2 cosine {float(F.cosine_similarity(g1, g2, dim=0)):.4f})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
