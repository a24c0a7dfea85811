#!/usr/bin/env python3
"""mil.predict_parity: `slidestream mil predict` against a PyTorch forward of the same checkpoint.

End to end, through the files a user sees: a cache of bags (written here with h5py in the
layout of include/slidestream/cache.h: features (N, D) float32, coords, centres, cell_ids, root
attributes format/version/slide_id/label/split/complete), a model from `slidestream mil init`
per architecture (and PAMIL with --proto-pred --inst-pred), `slidestream mil predict`, and then
the same checkpoint loaded (strict) into the PyTorch reference module of that architecture's
parity test (tests/mil_abmil/parity.py for ABMIL and ABMILX, tests/mil_pamil/pamil_parity.py,
tests/mil_dtfd/dtfd_parity.py: imported, not rewritten), run in eval mode in float64 on every
bag. Compared, per bag and per cell matched by (slide_id, cell_id):
  probability  bags.csv's softmax class 1 of the two logits      |c - r| <= PROB_TOL
  attention    instances.csv's attention toward class 1           |c - r| <= ATT_RTOL r + ATT_ATOL / n
  rank         1 = most attended; C's rank must lie within the ranks the reference allows when
               attentions closer than the attention tolerance count as ties
  prediction   argmax, unless the reference probability is within PROB_TOL of 0.5
and every bag's cells appear exactly once. The bags are 1, 2, 7, 300, 3000 and 20 000 cells (the
last crosses the blocked eval paths many times over: eval blocks of 1024 cells). ABMILX runs on
a cache of its own whose largest bag is ABMILX_BIG = 6000 cells instead (see there: its float64
reference is quadratic), still many key tiles of its online-softmax kernel. PyTorch's ABMILX
builds the (heads, n, n) score matrix, so for bags above CHUNK_OVER cells this test evaluates
the same module's sub-modules over blocks of query rows (abmilx_chunked; checked against the
module's own forward on the 300-cell bag).

Measured on this machine (slidestream float32 vs PyTorch float64, worst over every bag of the
five models): probability |c - r| 5.5e-7, nearly all of it bags.csv's 6 decimals (5e-7);
attention |c - r| / r 8.2e-7 (instances.csv prints 8 significant digits); C's rank at most 7
places from PyTorch's untied order, always within the tie bounds. The limits below leave 3.6x
and 24x room. A full run takes about 4 minutes at load 9 (ABMILX's reference 2 of them). Exit 77
when torch, numpy or h5py are missing.
"""
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

PROB_TOL = 2e-6
ATT_RTOL = 2e-5
ATT_ATOL = 1e-6  # divided by n: attention is a distribution over the bag
DIM = 512  # the ResNet-18 feature width
SIZES = [(1, 1), (2, 0), (7, 1), (300, 0), (3000, 1), (20000, 1)]  # (cells, label)
# ABMILX's reference costs n^2 x 512 multiply-adds per bag in float64 (about 20 CPU-minutes at
# n = 20 000 on this shared 2-core machine), so ABMILX gets a cache of its own whose largest bag
# is ABMILX_BIG cells: still 6 eval blocks of 1024 cells and many key tiles of the online softmax.
ABMILX_BIG = 6000
CHUNK_OVER = 1000
ROWS = 256  # query rows per block in abmilx_chunked
MODELS = [  # tag, arch, extra `mil init` flags, seed
    ("abmil", "abmil", [], 11),
    ("pamil", "pamil", [], 12),
    ("pamil_proto_inst", "pamil", ["--proto-pred", "--inst-pred"], 13),
    ("abmilx", "abmilx", [], 14),
    ("dtfd", "dtfd", [], 15),
]


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_cache(cache, sizes, np, h5py):
    """One file per bag. Features are non-negative (post-ReLU pooled features) with a few
    'witness' cells shifted along a fixed direction, so attention is far from uniform; cell ids
    are a shuffled, gapped numbering so that rows are matched by id, not by position."""
    rng = np.random.default_rng(20260214 + len(sizes) + sizes[-1][0])
    direction = rng.normal(0, 1, DIM).astype(np.float32)
    os.makedirs(cache)
    bags = {}
    for b, (n, y) in enumerate(sizes):
        sid = f"bag{b:02d}_n{n}"
        x = np.abs(rng.normal(0.3, 0.8, (n, DIM))).astype(np.float32)
        wit = rng.random(n) < 0.05
        x[wit] += 0.8 * np.abs(direction)
        ids = (rng.permutation(n) * 3 + 5).astype(np.uint64)
        centres = rng.integers(0, 50000, (n, 2)).astype(np.int64)
        with h5py.File(os.path.join(cache, sid + ".h5"), "w") as f:
            f.create_dataset("features", data=x)
            f.create_dataset("coords", data=centres - 48)
            f.create_dataset("centres", data=centres)
            f.create_dataset("cell_ids", data=ids)
            f.attrs["format"] = "slidestream-cache"
            f.attrs["version"] = np.int64(1)
            f.attrs["slide_id"] = sid
            f.attrs["label"] = np.int64(y)
            f.attrs["split"] = "test"
            f.attrs["complete"] = np.int64(1)
        bags[sid] = (x, ids, y)
    return bags


def reference(arch, ckpt, refs, torch, h5py):
    """The reference module of arch holding the checkpoint's tensors (every key, strict)."""
    with h5py.File(ckpt, "r") as f:
        a = {k: int(v) for k, v in f.attrs.items() if k not in ("format", "arch")}
        sd = {k: torch.from_numpy(f[k][()]) for k in f.keys()}
    if arch in ("abmil", "abmilx"):
        m = refs["parity"].build(arch, a)
    elif arch == "pamil":
        m = refs["pamil"].PamilReference(a["dim"], hidden=a["hidden"], attn=a["attn"],
                                         protos=a["protos"], proto_pred=bool(a["proto_pred"]),
                                         inst_pred=bool(a["inst_pred"]))
    else:
        m = refs["dtfd"].DTFD(a["dim"], a["hidden"], a["attn"], a["groups"])
    m.load_state_dict(sd, strict=True)
    return m.double().eval()


def abmilx_chunked(m, x, torch, rows=None):
    """ABMILX's forward (tests/mil_abmil/parity.py ABMILX.forward) with A+'s key softmax taken
    over blocks of `rows` (default ROWS) query rows: memory (heads, rows, n), not (heads, n, n).
    Also used by bench/mil_speed_bench_torch.py."""
    rows = rows or ROWS
    n = x.shape[0]
    hh = m.feature(x).view(n, m.heads, m.d).transpose(0, 1)  # (heads, n, d)
    a = m.attention(hh)  # (heads, n, 1)
    ap = m.attn_plus_fn
    q, k = ap.qk(ap.norm_x(hh)).split(ap.d, dim=-1)
    va = ap.v(a)
    out = torch.empty_like(a)
    for s in range(0, n, rows):
        p = torch.softmax(q[:, s:s + rows] @ k.transpose(-1, -2) * ap.d ** -0.5, dim=-1)
        out[:, s:s + rows] = a[:, s:s + rows] + p @ va
    alpha = torch.softmax(out.squeeze(-1), dim=1)
    z = torch.einsum("hn,hnd->hd", alpha, hh).reshape(-1)
    return m.classifier(m.proj(z)), alpha.mean(0)


def forward(arch, m, x, y, torch, rows=None):
    """Logits (2,) and attention (n,) in float64, eval mode, no gradient. ABMILX: chunked above
    CHUNK_OVER cells or when rows is given (rows = 0: the module's own forward)."""
    with torch.no_grad():
        xd = torch.from_numpy(x).double()
        if arch == "abmilx" and (rows if rows is not None else x.shape[0] > CHUNK_OVER):
            logits, att = abmilx_chunked(m, xd, torch, rows)
        elif arch == "pamil":
            logits, att, _ = m(xd, y)
        elif arch == "dtfd":
            logits, att = m(xd, list(range(x.shape[0])))
        else:
            logits, att = m(xd)
        return logits.reshape(-1).numpy(), att.reshape(-1).numpy()


def rank_bounds(r, tol, np):
    """Per cell, the lowest and highest rank (1 = most attended) it may take when attentions
    within tol of each other count as ties."""
    s = np.sort(r)
    lo = 1 + (len(r) - np.searchsorted(s, r + tol, side="right"))
    hi = len(r) - np.searchsorted(s, r - tol, side="left")
    return lo, hi


def check(tag, arch, m, bags, pred, torch, np):
    """Compare one prediction folder with the reference; returns (failures, worst errors)."""
    fails = []
    worst = {"prob": 0.0, "att_rel": 0.0, "rank_moves": 0}
    with open(os.path.join(pred, "bags.csv")) as f:
        brows = {r["slide_id"]: r for r in csv.DictReader(f)}
    cells = {}
    with open(os.path.join(pred, "instances.csv")) as f:
        for r in csv.DictReader(f):
            cells.setdefault(r["slide_id"], []).append(
                (int(r["cell_id"]), float(r["attention"]), int(r["rank"])))
    if sorted(brows) != sorted(bags):
        fails.append(f"bags.csv has bags {sorted(brows)}, the cache {sorted(bags)}")
    for sid, (x, ids, y) in sorted(bags.items()):
        n = len(ids)
        logits, ra = forward(arch, m, x, y, torch)
        rp = float(torch.softmax(torch.from_numpy(logits), 0)[1])
        row = brows.get(sid)
        if row is None:
            continue
        cp = float(row["probability"])
        worst["prob"] = max(worst["prob"], abs(cp - rp))
        if abs(cp - rp) > PROB_TOL:
            fails.append(f"{sid}: probability {cp} vs PyTorch {rp:.9f}")
        if int(row["prediction"]) != int(rp > 0.5) and abs(rp - 0.5) > PROB_TOL:
            fails.append(f"{sid}: prediction {row['prediction']} vs PyTorch p = {rp}")
        if int(row["label"]) != y:
            fails.append(f"{sid}: label {row['label']}, the cache says {y}")
        got = cells.get(sid, [])
        pos = {int(c): i for i, c in enumerate(ids)}
        if len(got) != n or sorted(pos.get(c, -1) for c, _, _ in got) != list(range(n)):
            fails.append(f"{sid}: instances.csv has {len(got)} rows, not each of the {n} cells once")
            continue
        ca = np.empty(n)
        cr = np.empty(n, dtype=np.int64)
        for c, a, r in got:
            ca[pos[c]], cr[pos[c]] = a, r
        err = np.abs(ca - ra)
        lim = ATT_RTOL * np.abs(ra) + ATT_ATOL / n
        worst["att_rel"] = max(worst["att_rel"], float((err / np.maximum(np.abs(ra), 1e-30)).max()))
        bad = np.nonzero(err > lim)[0]
        if len(bad):
            i = bad[np.argmax((err / lim)[bad])]
            fails.append(f"{sid}: {len(bad)} attention(s) out of tolerance, worst cell id "
                         f"{ids[i]}: {ca[i]:.9g} vs PyTorch {ra[i]:.9g}")
        lo, hi = rank_bounds(ra, lim.max(), np)
        if sorted(cr) != list(range(1, n + 1)):
            fails.append(f"{sid}: ranks are not a permutation of 1..{n}")
        out = np.nonzero((cr < lo) | (cr > hi))[0]
        if len(out):
            i = out[0]
            fails.append(f"{sid}: {len(out)} rank(s) outside the reference's, e.g. cell id "
                         f"{ids[i]}: rank {cr[i]}, PyTorch allows {lo[i]}..{hi[i]}")
        exact = n + 1 - np.argsort(np.argsort(ra, kind="stable"), kind="stable")
        worst["rank_moves"] = max(worst["rank_moves"], int(np.abs(cr - exact).max()))
        top = int(np.argmin(cr))
        print(f"  {tag} {sid}: p {cp:.6f} (PyTorch {rp:.7f}), attention worst |c-r| "
              f"{err.max():.2e} (max attention {ra.max():.3g}), rank-1 cell id {ids[top]} "
              f"(PyTorch's {ids[int(np.argmax(ra))]})", flush=True)
    return fails, worst


def main():
    try:
        import h5py
        import numpy as np
        import torch
    except ImportError as e:
        print(f"SKIP: mil.predict_parity needs torch, numpy and h5py in {sys.executable} ({e})")
        return 77
    ss = os.environ.get("SLIDESTREAM")
    src = os.environ.get("SS_SOURCE_DIR",
                         os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if not ss:
        print("usage: SLIDESTREAM=path/to/slidestream predict_parity.py")
        return 2
    torch.set_num_threads(2)
    refs = {
        "parity": load_module(os.path.join(src, "tests/mil_abmil/parity.py"), "ss_abmil_parity"),
        "pamil": load_module(os.path.join(src, "tests/mil_pamil/pamil_parity.py"), "ss_pamil_parity"),
        "dtfd": load_module(os.path.join(src, "tests/mil_dtfd/dtfd_parity.py"), "ss_dtfd_parity"),
    }
    work = tempfile.mkdtemp(prefix="ss-mil-pp.")
    try:
        caches = {}
        for name, sizes in (("cache", SIZES), ("cache-abmilx", SIZES[:-1] + [(ABMILX_BIG, 1)])):
            caches[name] = (os.path.join(work, name), write_cache(os.path.join(work, name), sizes,
                                                                  np, h5py))
            print(f"{name}: bags of {[n for n, _ in sizes]} cells, width {DIM}", flush=True)
        failed, ran, worst = [], [], {"prob": 0.0, "att_rel": 0.0, "rank_moves": 0}
        for tag, arch, flags, seed in MODELS:
            ckpt = os.path.join(work, tag + ".h5")
            r = subprocess.run([ss, "mil", "init", "--arch", arch, "--dim", str(DIM), "--out", ckpt,
                                "--seed", str(seed)] + flags, capture_output=True, text=True)
            if r.returncode:
                if "not built into" in r.stderr:
                    print(f"note: {arch} is not built into this slidestream")
                    continue
                failed.append(f"{tag}: mil init: {r.stderr.strip()}")
                continue
            pred = os.path.join(work, tag + "-pred")
            cache, bags = caches["cache-abmilx" if arch == "abmilx" else "cache"]
            t0 = time.time()
            r = subprocess.run([ss, "mil", "predict", "--model", ckpt, "--cache", cache, "--out", pred,
                                "--quiet"], capture_output=True, text=True)
            if r.returncode:
                failed.append(f"{tag}: mil predict: {r.stderr.strip()}")
                continue
            t1 = time.time()
            m = reference(arch, ckpt, refs, torch, h5py)
            if arch == "abmilx":  # the chunked evaluation is the module's forward
                x, _, y = bags[f"bag03_n{SIZES[3][0]}"]
                l0, a0 = forward(arch, m, x, y, torch, rows=0)
                l1, a1 = forward(arch, m, x, y, torch, rows=64)
                d = max(np.abs(l0 - l1).max(), (np.abs(a0 - a1) / a0).max())
                if d > 1e-10:
                    failed.append(f"abmilx_chunked differs from ABMILX.forward by {d:.2e}")
            print(f"== {tag} ({arch}{' ' + ' '.join(flags) if flags else ''}): mil predict "
                  f"{t1 - t0:.1f} s", flush=True)
            f, w = check(tag, arch, m, bags, pred, torch, np)
            print(f"   PyTorch reference and comparison {time.time() - t1:.1f} s", flush=True)
            failed += [f"{tag}: {s}" for s in f]
            for k in worst:
                worst[k] = max(worst[k], w[k])
            ran.append(tag)
        if not ran and not failed:
            print("SKIP: no MIL architecture is built into this slidestream")
            return 77
        print(f"worst over {', '.join(ran)}: probability |c - r| {worst['prob']:.2e} (limit "
              f"{PROB_TOL:g}); attention |c - r| / r {worst['att_rel']:.2e} (limit {ATT_RTOL:g} "
              f"+ {ATT_ATOL:g}/n absolute); largest rank shift against the untied order "
              f"{worst['rank_moves']}")
        for s in failed:
            print("FAIL:", s)
        if failed:
            return 1
        print(f"PASS: mil predict equals PyTorch's forward of the same checkpoint for {', '.join(ran)}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
