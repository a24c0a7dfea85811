#!/usr/bin/python3
"""PyTorch peer of bench/train_bench.c: the same training step per method, the same model
(torchvision resnet18, fc Linear(512, 2), projector Linear(512, 512)-ReLU-Linear(512, 512)), the
same batch composition (cells / 2 positive, the rest negative; 2 views a cell, 1 for supervised,
as ss_train_slot lays them out), the same thread count, the same output lines.

The step is the one tests/train_parity/step_parity.py checks the C trainer against, built from
that file's pieces (encode, nt_xent, similarity, flat_grad, combine): one forward call per view
group (pos v1, pos v2, neg v1, neg v2 | all v1, all v2 | all v1), the method's losses, one
autograd gradient per task (two for slam-ags, pcgrad, cagrad, mgda; g1 then g2, each graph freed
by its own backward), their combination, SGD(momentum 0.9, weight decay 1e-4) with the result as
every parameter's gradient. The combination runs on the float32 gradients, as the C trainer's
(float storage, double dot products); the parity test combines in float64 for precision, which
here would add conversions and temporaries of 11.7M doubles to every step. Plain autograd keeps every pass's activations until its
backward: no gradient caching, no recomputation (that is what the C trainer does instead).

usage: train_bench_torch.py [--threads N] [--methods m,m] [--sizes 64,96,224] [--cells 32]
                            [--steps 5] [--instances 1]
       train_bench_torch.py --memory [--threads N] [--methods slam-ags] [--sizes 224]
                            [--cells 256] [--limit-gb 16]
Speed lines:  train METHOD SIZE IMG/S MEAN_IMG/S CELLS VIEWS PASSES REFORWARDS LOSS (best step,
              mean of the steps; one warm-up step first; with --instances K the best of K
              freshly built models).
--memory runs every step in a child process whose address space is capped (RLIMIT_AS) at
--limit-gb, lowered to MemAvailable - 3 GB when the machine has less free: it first measures
one step at cells/8 and cells/4 and extrapolates linearly in the batch to `cells`; only when
that estimate fits under the cap with 10% to spare does it run the real step. Lines:
  memory_probe METHOD SIZE CELLS VIEWS RSS_MB
  memory_estimate METHOD SIZE CELLS VIEWS RSS_MB
  memory METHOD SIZE CELLS VIEWS RSS_MB          (or memory_skipped ... REASON)
"""
import argparse
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "train_parity"))
import step_parity as sp  # noqa: E402  (exits 77 when h5py/PIL/numpy are missing)

# The C trainer's defaults (ss_train_config_default) and the C bench's learning rate.
TAU, MOMENTUM, WD, LR = 0.07, 0.9, 1e-4, 1e-3
PASSES = sp.PASSES


def build(seed=1):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=2)
    model.projector = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    return model, opt


def batch(method, size, cells):
    """(x, npos, nneg): x holds the views in ss_train_slot's order, normal(0, 1)."""
    npos = cells // 2
    nneg = cells - npos
    views = npos + nneg if method == "supervised" else 2 * (npos + nneg)
    g = torch.Generator().manual_seed(2)
    return torch.randn(views, 3, size, size, generator=g), npos, nneg


def train_step(model, opt, x, npos, nneg, method):
    """One optimiser step of `method` on the batch x; returns the loss."""
    P, N = npos, nneg
    params = list(model.parameters())
    z = lambda v: model.projector(sp.encode(model, v))  # noqa: E731
    if method == "supervised":
        logits = model.fc(sp.encode(model, x[:P + N]))
        y = torch.cat([torch.ones(P, dtype=torch.long), torch.zeros(N, dtype=torch.long)])
        loss = F.cross_entropy(logits, y)
        flat = sp.flat_grad(loss, params, False)
    elif method == "simclr":
        loss = sp.nt_xent(z(x[:P + N]), z(x[P + N:]), TAU)
        flat = sp.flat_grad(loss, params, False)
    else:
        zp1, zp2 = z(x[:P]), z(x[P:2 * P])
        zn1, zn2 = z(x[2 * P:2 * P + N]), z(x[2 * P + N:])
        l_con, l_sim = sp.nt_xent(zp1, zp2, TAU), sp.similarity(zn1, zn2, TAU, TAU)
        loss = l_con + l_sim
        if method == "weaksupcon":
            flat = sp.flat_grad(loss, params, False)
        else:
            g1 = sp.flat_grad(l_con, params, False)
            g2 = sp.flat_grad(l_sim, params, False)
            flat = sp.combine(g1, g2, method)[0]
    i = 0
    for p in params:
        p.grad = flat[i:i + p.numel()].view_as(p)
        i += p.numel()
    opt.step()
    return loss.item()


def speed(a, methods, sizes):
    for size in sizes:
        for method in methods:
            x, P, N = batch(method, size, a.cells)
            best, mean = 1e30, 1e30
            for _ in range(max(1, a.instances)):
                model, opt = build()
                loss = train_step(model, opt, x, P, N, method)  # warm-up
                times = []
                for _ in range(a.steps):
                    t = time.perf_counter()
                    loss = train_step(model, opt, x, P, N, method)
                    times.append(time.perf_counter() - t)
                best, mean = min(best, min(times)), min(mean, sum(times) / len(times))
            v = x.shape[0]
            print(f"train {method} {size} {v / best:.2f} {v / mean:.2f} {a.cells} {v} "
                  f"{PASSES[method]} 0 {loss:.4f}", flush=True)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(a, method, size):
    """One step in this process (the parent capped its address space); prints RSS_MB."""
    x, P, N = batch(method, size, a.cells)
    model, opt = build()
    train_step(model, opt, x, P, N, method)
    print(f"rss_mb {peak_rss_mb():.0f}", flush=True)


def mem_available_gb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1048576
    return 0.0


def run_child(a, method, size, cells, limit_bytes):
    """(rss_mb or None, message) of one step in a capped child process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", "--threads",
           str(a.threads), "--methods", method, "--sizes", str(size), "--cells", str(cells)]

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=cap)
    for line in r.stdout.splitlines():
        if line.startswith("rss_mb "):
            return float(line.split()[1]), ""
    tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
    return None, f"exit {r.returncode}: {tail}"


def memory(a, method, size):
    views = lambda c: c if method == "supervised" else 2 * c  # noqa: E731
    limit_gb = min(a.limit_gb, mem_available_gb() - 3)
    print(f"memory_limit_gb {limit_gb:.1f}", flush=True)
    if limit_gb < 2:
        print(f"memory_skipped {method} {size} {a.cells} {views(a.cells)} "
              f"MemAvailable_{mem_available_gb():.1f}GB_leaves_a_cap_under_2GB", flush=True)
        return
    limit = int(limit_gb * 2**30)
    probes = []
    for c in (a.cells // 8, a.cells // 4):
        rss, msg = run_child(a, method, size, c, limit)
        if rss is None:
            print(f"memory_skipped {method} {size} {c} {views(c)} probe_failed: {msg}", flush=True)
            return
        print(f"memory_probe {method} {size} {c} {views(c)} {rss:.0f}", flush=True)
        probes.append((c, rss))
    (c1, r1), (c2, r2) = probes
    est = r2 + (r2 - r1) / (c2 - c1) * (a.cells - c2)
    print(f"memory_estimate {method} {size} {a.cells} {views(a.cells)} {est:.0f}", flush=True)
    if est * 1.1 > limit_gb * 1024:
        print(f"memory_skipped {method} {size} {a.cells} {views(a.cells)} "
              f"estimate_{est / 1024:.1f}GB_over_the_{limit_gb:.1f}GB_cap", flush=True)
        return
    rss, msg = run_child(a, method, size, a.cells, limit)
    if rss is None:
        print(f"memory_skipped {method} {size} {a.cells} {views(a.cells)} "
              f"failed_under_the_{limit_gb:.1f}GB_cap: {msg}", flush=True)
    else:
        print(f"memory {method} {size} {a.cells} {views(a.cells)} {rss:.0f}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--methods", default=",".join(sp.METHODS))
    p.add_argument("--sizes", default=None)
    p.add_argument("--cells", type=int, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--memory", action="store_true")
    p.add_argument("--limit-gb", type=float, default=16.0)
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    mem = a.memory or a.memory_child
    sizes = [int(s) for s in (a.sizes or ("224" if mem else "64,96,224")).split(",")]
    a.cells = a.cells or (256 if mem else 32)
    methods = [m for m in a.methods.split(",") if m]
    for m in methods:
        if m not in sp.METHODS:
            sys.exit(f"train_bench_torch: unknown method '{m}' (want {', '.join(sp.METHODS)})")
    if a.cells < 4 or a.steps < 1:
        sys.exit("train_bench_torch: want --cells >= 4 and --steps >= 1")
    torch.set_num_threads(a.threads)
    if a.memory_child:
        memory_child(a, methods[0], sizes[0])
        return
    print(f"torch {torch.__version__}")
    print(f"threads {torch.get_num_threads()}", flush=True)
    if a.memory:
        memory(a, methods[0], sizes[0])
    else:
        speed(a, methods, sizes)


if __name__ == "__main__":
    main()
