#!/usr/bin/python3
"""PyTorch peer of bench/mil_speed_bench.c: the same four MIL aggregators, the same measurements, the
same output lines (bench/run_mil_bench.sh prints them side by side).

The models are the PyTorch reference modules of the parity tests, imported, not rewritten:
tests/mil_abmil/parity.py (gated ABMIL, ABMILX), tests/mil_pamil/pamil_parity.py (PAMIL),
tests/mil_dtfd/dtfd_parity.py (DTFD-MIL), in the default configuration of `slidestream mil
init` (hidden 512; attention 128, PAMIL 256, ABMILX d; 8 heads; 10 prototypes; 4 pseudo-bags),
float32. Training step: zero_grad, forward, the architecture's loss (ABMIL, ABMILX: cross
entropy; PAMIL: the module's whole loss; DTFD: loss0 + loss1 on a random pseudo-bag partition),
backward, the optimiser of `mil train` (Adam; AdamW for ABMILX; lr and weight decay as
ss_mil_train_config_default). Inference: eval mode under torch.no_grad, logits and attention.

ABMILX's A+ builds a (heads, n, n) score matrix: 320 GB in float32 for one bag of 100 000 cells.
--large therefore evaluates it with tests/mil_predict_parity/predict_parity.py's abmilx_chunked
(the same module's sub-modules over blocks of LARGE_ROWS query rows; that test checks it
against the module's forward), which is how one would have to run it in PyTorch. Every --large
run also caps its own address space (RLIMIT_AS, --limit-gb, lowered to MemAvailable - 3 GB) so
that a mistake ends in a MemoryError here, not in the kernel's OOM killer on a shared machine.

usage: mil_speed_bench_torch.py ARCH [--dim 512] [--cells 1000] [--bags 8] [--epochs 3] [--threads N]
       mil_speed_bench_torch.py ARCH --large CELLS [--dim 512] [--threads N] [--limit-gb 10]
Output lines as mil_speed_bench.c's, plus `torch VERSION`.
"""
import argparse
import importlib.util
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LARGE_ROWS = 64  # ABMILX --large: (8, 64, 100 000) float32 = 205 MB a block
TRAIN = {  # ss_mil_train_config_default: optimiser, lr, weight decay
    "abmil": ("adam", 2e-4, 1e-4),
    "pamil": ("adam", 1e-3, 0.0),
    "abmilx": ("adamw", 1e-4, 0.0),
    "dtfd": ("adam", 1e-4, 1e-4),
}


def load(rel, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(arch, dim):
    torch.manual_seed(1)
    if arch in ("abmil", "abmilx"):
        cfg = dict(dim=dim, hidden=512, attn=128 if arch == "abmil" else 0, heads=8)
        return load("tests/mil_abmil/parity.py", "ss_abmil_parity").build(arch, cfg)
    if arch == "pamil":
        return load("tests/mil_pamil/pamil_parity.py", "ss_pamil_parity").PamilReference(
            dim, hidden=512, attn=256, protos=10)
    return load("tests/mil_dtfd/dtfd_parity.py", "ss_dtfd_parity").DTFD(dim, 512, 128, 4)


def step_loss(arch, m, x, y):
    """The architecture's training loss on one bag (train mode)."""
    if arch == "pamil":
        return m(x, y)[2]
    if arch == "dtfd":
        _, _, l0, l1 = m(x, np.random.permutation(x.shape[0]), y)
        return l0 + l1
    logits, _ = m(x)
    return F.cross_entropy(logits.reshape(1, 2), torch.tensor([y]))


def infer(arch, m, x, y, chunked=False):
    if arch == "pamil":
        return m(x, y)[:2]
    if arch == "dtfd":
        return m(x, np.arange(x.shape[0]))
    if chunked:
        pp = load("tests/mil_predict_parity/predict_parity.py", "ss_predict_parity")
        pp.ROWS = LARGE_ROWS
        return pp.abmilx_chunked(m, x, torch)
    return m(x)


def make_bag(gen, n, dim):
    return torch.randn(n, dim, generator=gen).mul_(0.8).add_(0.3).abs_()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cap_address_space(limit_gb):
    avail = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) / 1048576.0
    gb = min(limit_gb, max(avail - 3, 1))
    resource.setrlimit(resource.RLIMIT_AS, (int(gb * 2**30), resource.RLIM_INFINITY))
    return gb


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", choices=sorted(TRAIN))
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--bags", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--large", type=int, default=0)
    ap.add_argument("--limit-gb", type=float, default=10)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print("torch", torch.__version__)
    m = build(a.arch, a.dim)
    gen = torch.Generator().manual_seed(2)
    if a.large:
        gb = cap_address_space(a.limit_gb)
        m.eval()
        x = make_bag(gen, a.large, a.dim)
        base = peak_rss_mb()
        t = time.time()
        try:
            with torch.no_grad():
                logits, _ = infer(a.arch, m, x, 1, chunked=a.arch == "abmilx")
        except (MemoryError, RuntimeError) as e:
            print(f"large_failed {a.arch} {a.large} address-space cap {gb:.1f} GB: {e}"[:300])
            return 1
        t = time.time() - t
        p = float(torch.softmax(logits.reshape(-1).double(), 0)[1])
        print(f"large {a.arch} {a.large} {t:.3f} {peak_rss_mb():.0f} {base:.0f} {p:.6f}")
        return 0

    np.random.seed(3)
    xs = [make_bag(gen, a.cells, a.dim) for _ in range(a.bags)]
    kind, lr, wd = TRAIN[a.arch]
    opt = (torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)(
        m.parameters(), lr=lr, weight_decay=wd)
    m.train()
    best = total = 0.0
    for e in range(a.epochs + 1):
        t = time.time()
        loss_sum = 0.0
        for b, x in enumerate(xs):
            opt.zero_grad()
            loss = step_loss(a.arch, m, x, b % 2)
            loss.backward()
            opt.step()
            loss_sum += float(loss)
        t = time.time() - t
        if e:
            best, total = max(best, 1 / t), total + 1 / t
    print(f"train {a.arch} {a.cells} {a.bags} {best:.3f} {total / a.epochs:.3f} "
          f"{loss_sum / a.bags:.5f}", flush=True)
    m.eval()
    best = total = 0.0
    with torch.no_grad():
        for e in range(a.epochs + 1):
            t = time.time()
            for b, x in enumerate(xs):
                infer(a.arch, m, x, b % 2)
            t = time.time() - t
            if e:
                best, total = max(best, a.bags / t), total + a.bags / t
    print(f"infer {a.arch} {a.cells} {a.bags} {best:.2f} {total / a.epochs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
