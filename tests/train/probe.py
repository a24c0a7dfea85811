#!/usr/bin/python3
"""Linear probe: how well a linear classifier on embeddings separates normal from abnormal cells.

usage: probe.py EMB.h5 [NORMAL_PREFIX]   (EMB.h5 from `slidestream embed`: features, names)
Prints the 5-fold cross-validated ROC-AUC of an L2-regularised logistic regression on
standardised features (normal = file name starting with NORMAL_PREFIX, default LYT), and the
accuracy of a nearest-centroid rule on L2-normalised features (cosine), both averaged over
folds. Folds are stratified and fixed by a seed. numpy only.
"""
import sys

import h5py
import numpy as np


def auc(score, y):
    """ROC-AUC by the rank statistic (ties get half credit)."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    npos, nneg = y.sum(), len(y) - y.sum()
    return (r[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg)


def logreg(x, y, lam=1e-2, iters=300):
    """Full-batch Newton steps on the L2-regularised logistic loss (small d, exact enough)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = lam * np.eye(d + 1)
    reg[-1, -1] = 0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-xb @ w))
        g = xb.T @ (p - y) / n + reg @ w
        h = (xb * (p * (1 - p))[:, None]).T @ xb / n + reg
        step = np.linalg.solve(h + 1e-9 * np.eye(d + 1), g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def main():
    path = sys.argv[1]
    normal = sys.argv[2] if len(sys.argv) > 2 else "LYT"
    with h5py.File(path, "r") as f:
        x = f["features"][()].astype(np.float64)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
    base = [n.rsplit("/", 1)[-1] for n in names]
    y = np.array([0.0 if b.startswith(normal) else 1.0 for b in base])
    rng = np.random.default_rng(0)
    folds = np.empty(len(y), dtype=int)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        folds[idx] = np.arange(len(idx)) % 5
    aucs, accs = [], []
    for k in range(5):
        tr, te = folds != k, folds == k
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        xs = (x - mu) / sd
        w = logreg(xs[tr], y[tr])
        aucs.append(auc(np.hstack([xs[te], np.ones((te.sum(), 1))]) @ w, y[te]))
        u = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
        c0, c1 = u[tr & (y == 0)].mean(0), u[tr & (y == 1)].mean(0)
        pred = (u[te] @ c1 > u[te] @ c0).astype(float)
        accs.append((pred == y[te]).mean())
    print("n=%d abnormal=%d probe_auc=%.4f centroid_acc=%.4f" %
          (len(y), int(y.sum()), np.mean(aucs), np.mean(accs)))


if __name__ == "__main__":
    main()
