#!/usr/bin/python3
"""train.step_parity: one `slidestream train step` per method against the same step in PyTorch.

Run with Debian's /usr/bin/python3 (torch, torchvision, h5py, PIL); exits 77 when they are
missing. usage: step_parity.py WORKDIR [--slidestream BIN] [--methods m,m] [--blas both|inherit]
[--noise]

Fixture (written into WORKDIR by this script, seeded): a torchvision resnet18 with fc =
Linear(512, 2) and a projector Linear(512, HID)-ReLU-Linear(HID, OUT), BN affine parameters and
running statistics perturbed, saved as a slidestream HDF5 checkpoint (ck.h5); small RGB PNGs of
blob-shaped "cells" in pos/ and neg/, of several sizes whose margins over S are even (so the
centre-crop offset floor((w - S) / 2) is torchvision's CenterCrop offset too).

For each method the C command writes its checkpoint; the reference repeats the step here
(float32 model, gradients combined in float64, torch.optim.SGD from fresh state) and every tensor
is compared: parameters by their update D = new - old, batch-norm running statistics by value,
num_batches_tracked exactly. An element passes when
    |c - t| <= ulp + RTOL |t| + ATOL max|t|
with max over the tensor and ulp the float32 spacing at max(|old|, |new_t|): both sides store
their result in float32, so an update is never known better than that (this matters for tensors
that move by weight decay alone). The table reports, per method, the worst share of the budget
(|c - t| - ulp) / (RTOL |t| + ATOL max|t|) that an element uses, so e/t <= 1 passes. The
process exits 1 on any mismatch, naming the method, tensor and element (worst first).

The test runs under the OpenBLAS settings it inherits: where the environment sets
OPENBLAS_CORETYPE (this workplace does, because its OpenBLAS build is known to compute wrong
results with some processors' own kernels), tests must not change it. `--blas both` also runs
each method without it (method/native), by hand: on this machine's Cooper Lake core that run
was measured off by up to 1.9% of the largest update in one channel of layer3 for the two-pass
methods (see docs/nn-core.md), so it is not part of the ctest case.

--noise compares the float32 reference with a float64 one instead of running the C command: the
size of float32 summation-order noise in this step, from which the tolerances were chosen.
"""
import argparse
import math
import os
import subprocess
import sys
import time

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchvision
    import torchvision.transforms as T
    from PIL import Image
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import {e.name} (train.step_parity needs torch, "
          "torchvision, h5py, numpy and PIL: python3-torch, python3-torchvision, python3-h5py, "
          "python3-pil)")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nn"))
from make_reference import perturb_batchnorm  # noqa: E402  (the nn.parity fixture's BN set-up)

METHODS = ["slam-ags", "pcgrad", "cagrad", "mgda", "weaksupcon", "simclr", "supervised"]
TWO_TASK = {"slam-ags", "pcgrad", "cagrad", "mgda"}
# Forward passes per method: pos v1, pos v2, neg v1, neg v2 | all v1, all v2 | all v1.
PASSES = {m: 4 for m in TWO_TASK | {"weaksupcon"}}
PASSES.update(simclr=2, supervised=1)

S, HID, OUT = 64, 128, 64  # HID != OUT, so a swapped projector shape cannot pass
POS_SIZES = [(72, 72), (76, 72), (72, 84), (80, 80)]  # (height, width), margins even
NEG_SIZES = [(72, 72), (74, 78), (90, 72)]
MEAN = (0.6009, 0.5513, 0.7394)  # SLAM-AGS's, not ImageNet's: the attributes must be read
STD = (0.1982, 0.2448, 0.1076)
# None at the command's default. With this fixture and tau, g1.g2 < 0 (cosine -0.05: PCGrad
# projects, AGS rescales) and CAGrad's w* is inside (0, 1); at tau 0.1 w* sits on its bound.
LR, MOMENTUM, WD, TAU = 0.05, 0.9, 5e-4, 0.5
AGS_EPS, CAGRAD_C, CAGRAD_EPS = 1e-10, 0.5, 1e-8

# Tolerances. Measured (this fixture, 2026-12): the C step differs from float32 PyTorch by at
# most 1.5e-5 max|D| beyond rounding in a parameter update (float32 PyTorch vs float64 PyTorch:
# 1e-5) and 1.2e-6 in a running statistic; each uses <= 10% of the budgets below, which leaves
# room for other summation orders (thread counts, vector widths) but not for a wrong term.
RTOL, ATOL = 1e-3, 1e-4          # parameter updates
BUF_RTOL, BUF_ATOL = 1e-4, 1e-5  # running_mean / running_var values
MAX_REPORTED = 8                 # mismatching tensors listed per method (worst first)


# ---------------------------------------------------------------------------------------------
# Fixture

def build_model():
    model = torchvision.models.resnet18(num_classes=2)
    model.projector = nn.Sequential(nn.Linear(512, HID), nn.ReLU(), nn.Linear(HID, OUT))
    return model


def make_model(seed):
    torch.manual_seed(seed)
    model = build_model()
    perturb_batchnorm(model, torch.Generator().manual_seed(seed + 1))
    return model


def write_checkpoint(model, path):
    with h5py.File(path, "w") as f:
        for k, v in model.state_dict().items():
            f[k] = v.detach().numpy()
        f.attrs["arch"] = "resnet18"
        f.attrs["width_multiplier"] = 1.0
        f.attrs["input_size"] = S
        f.attrs["mean"] = list(MEAN)
        f.attrs["std"] = list(STD)


def cell_image(rng, h, w):
    """A pale, smoothly shaded background with a few stained cells (soft ellipses with a darker
    nucleus) and sensor noise: image-like statistics rather than white noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    bg = np.array([225.0, 205.0, 228.0]) + rng.normal(0, 8, 3)
    shade = 12 * np.sin(xx / w * rng.uniform(1, 3) + rng.uniform(0, 6)) * \
        np.cos(yy / h * rng.uniform(1, 3) + rng.uniform(0, 6))
    img = bg[None, None, :] + shade[:, :, None]
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(8, 18), rng.uniform(8, 18)
        r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        cyto = 0.5 - 0.5 * np.tanh((r2 - 1) * 3)      # soft cell outline
        nuc = 0.5 - 0.5 * np.tanh((r2 - 0.3) * 6)     # soft nucleus
        cyto_col = np.array([200.0, 150.0, 200.0]) + rng.normal(0, 15, 3)
        nuc_col = np.array([90.0, 50.0, 140.0]) + rng.normal(0, 15, 3)
        img = img * (1 - cyto[..., None]) + cyto_col * cyto[..., None]
        img = img * (1 - nuc[..., None]) + nuc_col * nuc[..., None]
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_images(folder, prefix, sizes, rng):
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(cell_image(rng, h, w), "RGB").save(os.path.join(folder, f"{prefix}{i:02d}.png"))


def load_views(folder):
    """Every image of the folder in file-name order, centre-cropped and normalised: (n, 3, S, S)."""
    tf = T.Compose([T.CenterCrop(S), T.ToTensor(), T.Normalize(MEAN, STD)])
    names = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    return torch.stack([tf(Image.open(os.path.join(folder, f)).convert("RGB")) for f in names])


# ---------------------------------------------------------------------------------------------
# Losses (the SLAM-AGS definitions, specs/methods.md §6.2)

def nt_xent(z1, z2, tau):
    """NT-Xent with rows interleaved per image (k and k^1 are one image's views); the row max is
    subtracted (detached) for stability; no base-temperature factor."""
    n = z1.shape[0]
    u = F.normalize(torch.stack([z1, z2], dim=1).reshape(2 * n, -1), dim=1)
    s = u @ u.T / tau
    s = s - s.max(dim=1, keepdim=True).values.detach()
    off = 1.0 - torch.eye(2 * n, dtype=s.dtype)
    log_prob = s - torch.log((torch.exp(s) * off).sum(dim=1, keepdim=True))
    k = torch.arange(2 * n)
    return -log_prob[k, k ^ 1].mean()


def similarity(z1, z2, tau, base_tau):
    """SLAM-AGS similarity loss on stack([z1, z2], dim=1): every ordered pair of distinct rows
    (view-major order) is a positive; no denominator."""
    f = F.normalize(torch.stack([z1, z2], dim=1), dim=-1)
    c = torch.cat(torch.unbind(f, dim=1), dim=0)
    s = c @ c.T / tau
    s = s - s.max(dim=1, keepdim=True).values.detach()
    pos = 1.0 - torch.eye(c.shape[0], dtype=s.dtype)
    mean_pos = (pos * s).sum(dim=1) / pos.sum(dim=1)
    return -(tau / base_tau) * mean_pos.mean()


# ---------------------------------------------------------------------------------------------
# Gradient combinations, on float64 flat vectors

def combine(g1, g2, method):
    """Returns (g, info). slam-ags / pcgrad follow the SLAM-AGS loop literally; cagrad and mgda
    the definitions of include/slidestream/nn_surgery.h."""
    info = {"|g1|": g1.norm().item(), "|g2|": g2.norm().item(),
            "cos": float(g1 @ g2 / (g1.norm() * g2.norm()))}
    if method in ("slam-ags", "pcgrad"):
        grads, pc = [g1, g2], [g1.clone(), g2.clone()]
        for i in range(2):
            for j in range(2):
                if i == j:
                    continue
                gj = grads[j]
                nj = gj @ gj
                if nj.item() == 0:
                    continue
                dot = pc[i] @ gj
                if dot < 0:
                    pc[i] = pc[i] - (dot / (nj + AGS_EPS)) * gj
        g = pc[0] + pc[1]
        if method == "slam-ags":
            post = g.norm()
            if post.item() > 0:
                info["scale"] = float((g1 + g2).norm() / (post + AGS_EPS))
                g = g * info["scale"]
        return g, info
    if method == "cagrad":
        w, s = cagrad_weight(g1, g2, CAGRAD_C)
        gw = w * g1 + (1 - w) * g2
        lam = s / (gw.norm().item() + CAGRAD_EPS)
        g = (0.5 * (g1 + g2) + lam * gw) / (1 + CAGRAD_C ** 2)
        info["w"] = w
        return g, info
    if method == "mgda":
        d2 = ((g1 - g2) ** 2).sum().item()
        alpha = ((g2 - g1) @ g2).item() / d2 if d2 > 0 else 0.5
        alpha = min(max(alpha, 0.0), 1.0)
        info["w"] = alpha
        return alpha * g1 + (1 - alpha) * g2, info
    raise ValueError(method)


def cagrad_weight(g1, g2, c):
    """CAGrad's w* = argmin_{w in [0,1]} g_w.g0 + s|g_w| with s = c sqrt(|g0|^2 + 1e-8) + 1e-8
    (the official epsilons), found by bisection on the derivative of this convex function
    (an independent route from the closed form in lib/nn/surgery.c). Returns (w*, s)."""
    n11, n22, n12 = (g1 @ g1).item(), (g2 @ g2).item(), (g1 @ g2).item()
    s = c * math.sqrt(max(0.25 * (n11 + 2 * n12 + n22), 0.0) + CAGRAD_EPS) + CAGRAD_EPS
    A, B, C = n11 - 2 * n12 + n22, n12 - n22, n22  # |g_w|^2 = A w^2 + 2 B w + C
    if A <= 0:
        return 0.5, s
    dg0 = 0.5 * (n11 - n22)  # (g1 - g2).g0

    def slope(w):
        nw = math.sqrt(max(A * w * w + 2 * B * w + C, 0.0))
        return dg0 + (s * (A * w + B) / nw if nw > 0 else 0.0)

    if slope(0.0) >= 0:
        return 0.0, s
    if slope(1.0) <= 0:
        return 1.0, s
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if slope(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi), s


# ---------------------------------------------------------------------------------------------
# The reference step

def encode(m, x):
    h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
    return torch.flatten(m.avgpool(h), 1)


def flat_grad(loss, params, retain):
    gs = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([torch.zeros(p.numel(), dtype=p.dtype) if g is None else g.reshape(-1)
                      for p, g in zip(params, gs)])


class Reference:
    """The PyTorch step for every method, sharing forward passes and gradients where the
    methods do (the four two-task methods and weaksupcon run the same four passes)."""

    def __init__(self, sd0, pos, neg, dtype):
        self.sd0, self.dtype = sd0, dtype
        self.pos, self.neg = pos.to(dtype), neg.to(dtype)
        self.cache = {}

    def _model(self):
        model = build_model()
        model.load_state_dict(self.sd0)
        model.to(self.dtype).train()
        return model

    def _grads(self, kind):
        """(model after the forward passes, {name: flat gradient}, losses) for one kind of
        forward: 'two-task' (also gives weaksupcon's), 'simclr' or 'supervised'."""
        if kind in self.cache:
            return self.cache[kind]
        model = self._model()
        params = list(model.parameters())
        P, N = self.pos.shape[0], self.neg.shape[0]
        z = lambda x: model.projector(encode(model, x))  # noqa: E731
        if kind == "two-task":
            zp1, zp2, zn1, zn2 = z(self.pos), z(self.pos), z(self.neg), z(self.neg)
            l_con, l_sim = nt_xent(zp1, zp2, TAU), similarity(zn1, zn2, TAU, TAU)
            g = {"g1": flat_grad(l_con, params, True), "g2": flat_grad(l_sim, params, True),
                 "weaksupcon": flat_grad(l_con + l_sim, params, False)}
            losses = {"L_con": l_con.item(), "L_sim": l_sim.item()}
        elif kind == "simclr":
            both = torch.cat([self.pos, self.neg])
            loss = nt_xent(z(both), z(both), TAU)
            g, losses = {"simclr": flat_grad(loss, params, False)}, {"L": loss.item()}
        else:
            logits = model.fc(encode(model, torch.cat([self.pos, self.neg])))
            y = torch.tensor([1] * P + [0] * N)
            loss = F.cross_entropy(logits, y)
            g, losses = {"supervised": flat_grad(loss, params, False)}, {"L": loss.item()}
        self.cache[kind] = (model, g, losses)
        return self.cache[kind]

    def step(self, method):
        """{state_dict key: new value (numpy)}, info."""
        kind = "two-task" if method in TWO_TASK | {"weaksupcon"} else method
        trained, g, losses = self._grads(kind)
        info = dict(losses)
        if method in TWO_TASK:
            flat, extra = combine(g["g1"].double(), g["g2"].double(), method)
            info.update(extra)
            if extra["cos"] > -1e-3 or (method == "cagrad" and not 0 < extra["w"] < 1):
                print(f"NOTE: {method}: the fixture no longer reaches the interesting branch "
                      f"(cosine {extra['cos']:.4g}, weight {extra.get('w', '-')}); choose "
                      "another seed or tau", flush=True)
            flat = flat.to(self.dtype)
        else:
            flat = g[method]
        model = self._model()  # parameters as loaded, fresh optimiser
        params = list(model.parameters())
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WD)
        i = 0
        for p in params:
            p.grad = flat[i:i + p.numel()].view_as(p).clone()
            i += p.numel()
        assert i == flat.numel()
        opt.step()
        out = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        for k, v in trained.state_dict().items():  # buffers after this method's passes
            if "running_" in k or "num_batches_tracked" in k:
                out[k] = v.detach().numpy().copy()
        return out, info


# ---------------------------------------------------------------------------------------------
# Comparison

def ulp32(x):
    return np.spacing(np.abs(x).astype(np.float32)).astype(np.float64)


def compare(method, old, got, want, param_names):
    """Rows of (kind, tensor, worst err/tol, worst err/max|t|) and failure messages."""
    rows, fails = [], []
    for k in old:
        if k not in got:
            fails.append(f"{method}: tensor {k} missing from the C checkpoint")
            continue
        c, t, o = got[k], want[k], old[k]
        if c.shape != t.shape:
            fails.append(f"{method}: {k} has shape {c.shape}, expected {t.shape}")
            continue
        if "num_batches_tracked" in k:
            ok = int(c) == int(t)
            rows.append(("count", k, 0.0 if ok else math.inf, 0.0))
            if not ok:
                fails.append(f"{method}: {k} = {int(c)}, expected {int(t)} (was {int(o)})")
            continue
        if k in param_names:
            kind, rtol, atol = "param", RTOL, ATOL
            cv, tv = c.astype(np.float64) - o, t.astype(np.float64) - o  # updates
        else:
            kind, rtol, atol = "buffer", BUF_RTOL, BUF_ATOL
            cv, tv = c.astype(np.float64), t.astype(np.float64)
        scale = np.abs(tv).max()
        err = np.abs(cv - tv)
        # Rounding of the stored float32 results (either side's), then the numerical budget.
        rounding = ulp32(np.maximum(np.abs(t), np.abs(o)))
        budget = rtol * np.abs(tv) + atol * scale
        excess = np.maximum(err - rounding, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(excess == 0, 0.0, excess / budget)
        ratio = np.where(np.isfinite(cv), ratio, np.inf)
        worst = int(np.argmax(ratio))
        rows.append((kind, k, float(ratio.flat[worst]),
                     float(excess.max() / scale) if scale > 0 else float(excess.max())))
        if not ratio.flat[worst] <= 1.0:
            idx = np.unravel_index(worst, ratio.shape) if ratio.ndim else ()
            what = "update" if kind == "param" else "value"
            bad = int(np.sum(~(ratio <= 1.0)))
            fails.append((float(ratio.flat[worst]),
                          f"{method}: {k}{list(idx)} {what} {cv.flat[worst]:.9g}, expected "
                          f"{tv.flat[worst]:.9g} (|diff| {err.flat[worst]:.3g} > "
                          f"{rounding.flat[worst]:.3g} rounding + {budget.flat[worst]:.3g} "
                          f"tolerance; {bad} of {ratio.size} elements out)"))
    fails = [f if isinstance(f, str) else f[1] for f in
             sorted(fails, key=lambda f: -math.inf if isinstance(f, str) else -f[0])]
    return rows, fails


def summarise(method, rows, info):
    def worst(kind, col):
        r = [x for x in rows if x[0] == kind]
        return max(r, key=lambda x: x[col]) if r else ("", "-", 0.0, 0.0)

    p, p_rel, b = worst("param", 2), worst("param", 3), worst("buffer", 2)
    cnt = all(x[2] == 0.0 for x in rows if x[0] == "count")
    extra = " ".join(f"{k}={v:.4g}" for k, v in info.items())
    return (f"{method:<17} {p[2]:7.3f} {p[1]:<26} {p_rel[3]:8.1e} {p_rel[1]:<26} {b[2]:6.3f} "
            f"{b[1]:<30} {'ok' if cnt else 'BAD':>3}  {extra}")


HEADER = (f"{'method':<17} {'e/t':>7} {'worst parameter':<26} {'e/max|D|':>8} {'at':<26} "
          f"{'e/t':>6} {'worst running stat':<30} {'nbt':>3}  losses / combination")


def read_h5(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f.keys()}, dict(f.attrs)


# ---------------------------------------------------------------------------------------------
# Self-checks of the reference (run first, every time)

def self_checks():
    """The reference's own pieces against independent computations; returns failure messages."""
    fails = []
    rng = torch.Generator().manual_seed(7)

    def close(name, a, b, tol):
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        e = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-300)
        if not e <= tol:
            fails.append(f"self-check {name}: relative error {e:.3g} > {tol:g}")

    # PCGrad / AGS by hand: g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1, so
    # g1' = g1 + g2/2 = (1/2, 1/2), g2' = g2 + g1 = (0, 1); |g1 + g2| = 1.
    g1, g2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([-1.0, 1.0], dtype=torch.float64)
    close("pcgrad 2-D", combine(g1, g2, "pcgrad")[0], [0.5, 1.5], 1e-9)
    close("slam-ags 2-D", combine(g1, g2, "slam-ags")[0], torch.tensor([0.5, 1.5], dtype=torch.float64) / math.sqrt(2.5),
          1e-9)  # the 1e-10 epsilons
    # Random vectors, conflicting or not, and one zero gradient: against the coefficient form
    # out = (1 - [c<0] g1.g2/|g1|^2) g1 + (1 - [c<0] g1.g2/|g2|^2) g2.
    for trial in range(6):
        a = torch.randn(1000, generator=rng, dtype=torch.float64)
        b = torch.randn(1000, generator=rng, dtype=torch.float64) + (trial - 3) * 0.05 * a
        if trial == 5:
            b = torch.zeros_like(a)
        d = (a @ b).item()
        ca = 1 - (d / (a @ a).item() if d < 0 else 0.0)
        cb = 1 - (d / (b @ b).item() if d < 0 else 0.0)
        direct = ca * a + cb * b
        close(f"pcgrad random {trial}", combine(a, b, "pcgrad")[0], direct, 1e-9)
        ags = direct * ((a + b).norm() / direct.norm())
        close(f"slam-ags random {trial}", combine(a, b, "slam-ags")[0], ags, 1e-9)
    # CAGrad's w* (bisection) against a dense grid plus golden-section search on F itself;
    # MGDA's alpha against the minimum-norm point found the same way.
    for trial in range(6):
        a = torch.randn(500, generator=rng, dtype=torch.float64)
        b = torch.randn(500, generator=rng, dtype=torch.float64) * (0.3 + trial) - 0.4 * trial * a
        g0 = 0.5 * (a + b)
        s = CAGRAD_C * math.sqrt(g0.norm().item() ** 2 + CAGRAD_EPS) + CAGRAD_EPS

        def golden(fun):
            ws = np.linspace(0, 1, 2001)
            i = int(np.argmin([fun(w) for w in ws]))
            lo, hi = ws[max(i - 1, 0)], ws[min(i + 1, 2000)]
            for _ in range(100):
                m1, m2 = lo + 0.382 * (hi - lo), hi - 0.382 * (hi - lo)
                if fun(m1) < fun(m2):
                    hi = m2
                else:
                    lo = m1
            return 0.5 * (lo + hi)

        f_cag = lambda w: ((w * a + (1 - w) * b) @ g0).item() + s * (w * a + (1 - w) * b).norm().item()  # noqa
        w_ref = golden(f_cag)
        w, _ = cagrad_weight(a, b, CAGRAD_C)
        if abs(w - w_ref) > 1e-6:
            fails.append(f"self-check cagrad {trial}: w* {w:.9f}, grid/golden {w_ref:.9f}")
        gw = w_ref * a + (1 - w_ref) * b
        close(f"cagrad out {trial}", combine(a, b, "cagrad")[0],
              (g0 + s / (gw.norm() + CAGRAD_EPS) * gw) / (1 + CAGRAD_C ** 2), 1e-5)
        alpha = golden(lambda w: (w * a + (1 - w) * b).norm().item())
        close(f"mgda out {trial}", combine(a, b, "mgda")[0], alpha * a + (1 - alpha) * b, 1e-5)

    # Losses against their definitions written out element by element (float64).
    n, d, tau = 3, 5, 0.13
    z1 = torch.randn(n, d, generator=rng, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, d, generator=rng, dtype=torch.float64, requires_grad=True)
    rows = [r for i in range(n) for r in (z1[i], z2[i])]  # interleaved
    u = [r / r.norm() for r in rows]
    total = 0
    for k in range(2 * n):
        den = sum(torch.exp(u[k] @ u[l] / tau) for l in range(2 * n) if l != k)
        total = total - (u[k] @ u[k ^ 1] / tau - torch.log(den))
    loop = total / (2 * n)
    mine = nt_xent(z1, z2, tau)
    close("nt-xent value", mine.item(), loop.item(), 1e-12)
    close("nt-xent gradient", torch.cat([x.reshape(-1) for x in torch.autograd.grad(mine, (z1, z2))]),
          torch.cat([x.reshape(-1) for x in torch.autograd.grad(loop, (z1, z2))]), 1e-10)
    rows = [z1[i] for i in range(n)] + [z2[i] for i in range(n)]  # view-major; order immaterial
    u = [r / r.norm() for r in rows]
    closed = sum(1 - u[k] @ u[l] for k in range(2 * n) for l in range(2 * n) if l != k)
    closed = closed / (2 * n * (2 * n - 1)) / tau
    mine = similarity(z1, z2, tau, tau)
    close("similarity value", mine.item(), closed.item(), 1e-12)
    close("similarity gradient", torch.cat([x.reshape(-1) for x in torch.autograd.grad(mine, (z1, z2))]),
          torch.cat([x.reshape(-1) for x in torch.autograd.grad(closed, (z1, z2))]), 1e-10)

    # torch.optim.SGD's first step from fresh state: D = -lr (g + wd p), momentum not yet felt.
    p = torch.randn(50, generator=rng)
    gr = torch.randn(50, generator=rng)
    q = p.clone().requires_grad_(True)
    q.grad = gr.clone()
    torch.optim.SGD([q], lr=LR, momentum=MOMENTUM, weight_decay=WD).step()
    close("sgd first step", (q.detach() - p).double(), -LR * (gr.double() + WD * p.double()), 1e-5)
    return fails


# ---------------------------------------------------------------------------------------------

def run_c(exe, name, method, ck, pos_dir, neg_dir, old, env, fails):
    """Runs `slidestream train step`; returns the output checkpoint's tensors, or None (with a
    message in fails)."""
    out = os.path.join(os.path.dirname(ck), f"out_{name.replace('/', '_')}.h5")
    if os.path.exists(out):
        os.remove(out)
    cmd = [exe, "train", "step", "--method", method, "--checkpoint", ck, "--pos", pos_dir,
           "--neg", neg_dir, "--out", out, "--lr", repr(LR), "--momentum", repr(MOMENTUM),
           "--weight-decay", repr(WD), "--tau", repr(TAU)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0 or not os.path.exists(out):
        fails.append(f"{name}: `{' '.join(cmd)}` exited {r.returncode}:\n{r.stdout}{r.stderr}")
        print(f"[{name}] C command failed (exit {r.returncode})", flush=True)
        return None
    got, attrs = read_h5(out)
    _, attrs0 = read_h5(ck)
    for a, v in attrs0.items():
        if a not in attrs or np.any(np.asarray(attrs[a]) != np.asarray(v)):
            fails.append(f"{name}: root attribute {a} = {attrs.get(a)!r}, expected {v!r} (as in "
                         "the input checkpoint)")
    extra = sorted(set(got) - set(old))
    if extra:
        print(f"[{name}] note: datasets not in the input checkpoint: {extra}")
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir")
    ap.add_argument("--slidestream", default=os.environ.get("SLIDESTREAM", ""))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--blas", choices=("both", "inherit"), default="inherit",
                    help="with OPENBLAS_CORETYPE set, also run without it (both) or only as "
                         "inherited (inherit, the default)")
    ap.add_argument("--noise", action="store_true",
                    help="compare float32 PyTorch with float64 PyTorch; do not run the C command")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            sys.exit(f"step_parity: unknown method '{m}' (want {', '.join(METHODS)})")
    torch.set_num_threads(args.threads)

    fails = self_checks()
    if fails:
        print("\n".join(fails))
        print("FAIL: the PyTorch reference failed its self-checks")
        return 1
    print("self-checks of the reference: ok (PCGrad/AGS, CAGrad, MGDA, NT-Xent, similarity, SGD)")

    os.makedirs(args.workdir, exist_ok=True)
    ck = os.path.join(args.workdir, "ck.h5")
    pos_dir, neg_dir = os.path.join(args.workdir, "pos"), os.path.join(args.workdir, "neg")
    model = make_model(20240)
    write_checkpoint(model, ck)
    rng = np.random.default_rng(5)
    write_images(pos_dir, "p", POS_SIZES, rng)
    write_images(neg_dir, "n", NEG_SIZES, rng)
    old, _ = read_h5(ck)
    old64 = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in old.items()}
    sd0 = {k: torch.from_numpy(np.asarray(v)) for k, v in old.items()}
    param_names = {k for k, _ in model.named_parameters()}
    pos, neg = load_views(pos_dir), load_views(neg_dir)
    print(f"fixture: resnet18 + fc(2) + projector 512-{HID}-{OUT}, S={S}, {pos.shape[0]} pos / "
          f"{neg.shape[0]} neg images; lr {LR} momentum {MOMENTUM} wd {WD} tau {TAU}")
    print(f"tolerances: parameter updates rtol {RTOL:g} atol {ATOL:g}*max|D|; running stats "
          f"rtol {BUF_RTOL:g} atol {BUF_ATOL:g}*max; each beyond 1 float32 ulp of rounding")

    ref = Reference(sd0, pos, neg, torch.float32)
    ref64 = Reference({k: v.double() if v.is_floating_point() else v for k, v in sd0.items()},
                      pos, neg, torch.float64) if args.noise else None
    if not args.noise:
        exe = args.slidestream
        if not exe or not os.access(exe, os.X_OK):
            print(f"FAIL: no slidestream binary (got '{exe}'; pass --slidestream or set SLIDESTREAM)")
            return 1

    lines, all_fails = [], []
    # The C library picks some kernels by the OpenBLAS core (ss_nn_blas_avx512), and
    # OPENBLAS_CORETYPE may force an older one: when it is set, every method also runs without
    # it ("native"), so both kernel families are checked.
    variants = [("", dict(os.environ))]
    if os.environ.get("OPENBLAS_CORETYPE") and args.blas == "both":
        variants.append(("native", {k: v for k, v in os.environ.items()
                                    if k != "OPENBLAS_CORETYPE"}))
        print(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set: each method runs with "
              "it and without it (/native)")
    for method in methods:
        want, info = ref.step(method)
        for k, v in want.items():  # the reference's own bookkeeping: passes counted
            if "num_batches_tracked" in k and int(v) != int(old[k]) + PASSES[method]:
                all_fails.append(f"{method}: reference {k} = {int(v)}, expected "
                                 f"{int(old[k]) + PASSES[method]}")
        for variant, env in ([("", None)] if args.noise else variants):
            t0, name = time.time(), method + ("/" + variant if variant else "")
            if args.noise:
                got, _ = ref64.step(method)
                source = "float64 PyTorch"
            else:
                got = run_c(args.slidestream, name, method, ck, pos_dir, neg_dir, old, env,
                            all_fails)
                if got is None:
                    continue
                source = "slidestream"
            rows, fails = compare(name, old64, got, want, param_names)
            all_fails += fails[:MAX_REPORTED]
            if len(fails) > MAX_REPORTED:
                all_fails.append(f"{name}: ... and {len(fails) - MAX_REPORTED} more tensors")
            lines.append(summarise(name, rows, info))
            print(f"[{name}] {source} vs PyTorch: {len(rows)} tensors, "
                  f"{'ok' if not fails else f'{len(fails)} mismatching'} "
                  f"({time.time() - t0:.1f} s)", flush=True)

    print("\nworst share of the tolerance per method: e/t = (|c - t| - ulp) / (rtol |t| + atol "
          "max|t|), <= 1 passes;\ne/max|D| = worst (|Dc - Dt| - ulp) / max|Dt| over the parameter "
          "tensors")
    print(HEADER)
    print("\n".join(lines))
    if all_fails:
        print("\nMISMATCHES:")
        print("\n".join(all_fails))
        print(f"FAIL: {len(all_fails)} mismatch(es)")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
