#!/usr/bin/python3
"""PyTorch peer of bench/resnet_bench.c: the same torchvision ResNet-18 (1000 classes), the same
batches, the same thread count, the same output lines ("infer SIZE IMG/S", "train SIZE IMG/S",
"rss_mb MB"). Inference: eval mode under inference_mode. Training step: zero_grad, forward,
cross-entropy, backward, SGD(lr 0.01, momentum 0.9, weight decay 1e-4).

usage: resnet_bench_torch.py [--threads N] [--sizes 64,96,224] [--batch 32] [--min-time S] [--cpu]
       resnet_bench_torch.py --memory [--threads N]
"""
import argparse
import resource
import time

import torch
import torch.nn.functional as F
import torchvision


def best_time(fn, min_time, clock=time.perf_counter):
    # Warm-up: at least 3 calls and min_time / 2 seconds. PyTorch's first calls at a new size
    # (oneDNN primitive set-up) run at about half its steady speed, and one call is not enough.
    w0, k = clock(), 0
    while k < 3 or clock() - w0 < 0.5 * min_time:
        fn()
        k += 1
    best, total, i = 1e30, 0.0, 0
    while i < 1 or total < min_time:
        t = clock()
        fn()
        t = clock() - t
        total += t
        best = min(best, t)
        i += 1
        if i > 50:
            break
    return best


def setup(size, n):
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=1000)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(n, 3, size, size)
    y = torch.randint(0, 1000, (n,))
    return model, opt, x, y


def train_step(model, opt, x, y):
    model.train()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="64,96,224")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--memory", action="store_true")
    p.add_argument("--cpu", action="store_true", help="time with process CPU time")
    p.add_argument("--instances", type=int, default=3,
                   help="models built per size; the best is kept (see below)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}")
    print(f"threads {torch.get_num_threads()}")
    if a.memory:
        model, opt, x, y = setup(96, 256)
        train_step(model, opt, x, y)
        print(f"rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
        return
    # PyTorch's speed differs by up to 2x from one model instance to the next (measured here:
    # inference at 64 px about 400 or about 820 images/s, whatever the warm-up), so each size
    # is timed on a few freshly built models and the fastest counts: the peer at its best.
    clock = time.process_time if a.cpu else time.perf_counter
    for size in (int(s) for s in a.sizes.split(",")):
        ti = tt = 1e30
        for _ in range(max(1, a.instances)):
            model, opt, x, y = setup(size, a.batch)
            model.eval()

            def infer():
                with torch.inference_mode():
                    model(x)

            ti = min(ti, best_time(infer, a.min_time, clock))
            tt = min(tt, best_time(lambda: train_step(model, opt, x, y), a.min_time, clock))
        print(f"infer {size} {a.batch / ti:.1f}", flush=True)
        print(f"train {size} {a.batch / tt:.1f}", flush=True)


if __name__ == "__main__":
    main()
