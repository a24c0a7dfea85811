"""Checks an embedding cache against the bag manifest of the run that wrote it, and compares
two caches. Used by the pipeline.* tests; exits non-zero with the reason on any mismatch.

  check_cache.py check CACHE_DIR BAGS_DIR        every bag: one row per cell, right coordinates
  check_cache.py same CACHE_A CACHE_B [--exact]  same rows per slide (order aside)
"""
import csv
import glob
import os
import sys

import h5py
import numpy as np


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def load(path):
    with h5py.File(path, "r") as f:
        if f.attrs.get("complete") != 1:
            fail("%s does not say complete=1" % path)
        feats = f["features"][()]
        if feats.dtype != np.float32 or feats.ndim != 2:
            fail("%s: features %s %s" % (path, feats.dtype, feats.shape))
        coords = f["coords"][()]
        if coords.dtype != np.int64 or coords.shape != (feats.shape[0], 2):
            fail("%s: coords %s %s" % (path, coords.dtype, coords.shape))
        psl0 = int(f["coords"].attrs["patch_size_level0"])
        ids = f["cell_ids"][()]
        centres = f["centres"][()]
    order = np.argsort(ids, kind="stable")
    return ids[order], feats[order], coords[order], centres[order], psl0


def check(cache, bags_dir):
    bags = {r["bag_id"]: r for r in csv.DictReader(open(os.path.join(bags_dir, "bags.csv")))}
    cells = {}
    for r in csv.DictReader(open(os.path.join(bags_dir, "bag_cells.csv"))):
        cells.setdefault(r["bag_id"], []).append(r)
    if not bags:
        fail("no bags in %s" % bags_dir)
    leftovers = glob.glob(os.path.join(cache, "*.tmp"))
    if leftovers:
        fail("temporary files left behind: %s" % leftovers)
    total = 0
    for bag_id, b in bags.items():
        if b["complete"] != "1":
            fail("bag %s is not complete in the manifest" % bag_id)
        path = os.path.join(cache, bag_id + ".h5")
        if not os.path.exists(path):
            fail("no cache file for bag %s" % bag_id)
        ids, feats, coords, centres, psl0 = load(path)
        want = sorted(cells.get(bag_id, []), key=lambda r: int(r["cell_id"]))
        if len(ids) != int(b["n_cells"]) or len(ids) != len(want):
            fail("%s: %d rows, the bag has %s cells" % (bag_id, len(ids), b["n_cells"]))
        if len(set(ids.tolist())) != len(ids):
            fail("%s: a cell appears twice" % bag_id)
        wid = np.array([int(r["cell_id"]) for r in want], dtype=np.uint64)
        wxy = np.array([[int(r["x"]), int(r["y"])] for r in want], dtype=np.int64).reshape(-1, 2)
        if not np.array_equal(ids, wid):
            fail("%s: cell ids differ from the bag manifest" % bag_id)
        if not np.array_equal(centres, wxy):
            fail("%s: centres differ from the bag manifest" % bag_id)
        if not np.array_equal(coords, centres - psl0 // 2):
            fail("%s: coords are not the crops' top-left corners" % bag_id)
        if not np.isfinite(feats).all():
            fail("%s: non-finite features" % bag_id)
        total += len(ids)
    print("ok: %d bags, %d cells, one row each with the right coordinates" % (len(bags), total))


def same(a, b, exact):
    fa = sorted(os.path.basename(p) for p in glob.glob(os.path.join(a, "*.h5")))
    fb = sorted(os.path.basename(p) for p in glob.glob(os.path.join(b, "*.h5")))
    if not fa or fa != fb:
        fail("different files: %s vs %s" % (fa, fb))
    worst = 0.0
    for name in fa:
        ia, xa, ca, _, _ = load(os.path.join(a, name))
        ib, xb, cb, _, _ = load(os.path.join(b, name))
        if not np.array_equal(ia, ib) or not np.array_equal(ca, cb):
            fail("%s: different cells or coordinates" % name)
        if exact and not np.array_equal(xa.view(np.uint32), xb.view(np.uint32)):
            fail("%s: features are not bit-identical" % name)
        if xa.size:
            # Per embedding, relative to its largest element: batches of other sizes take
            # other sgemm blocking paths, so the last bits may differ (float rounding).
            scale = np.maximum(np.abs(xa).max(axis=1, keepdims=True), 1e-12)
            worst = max(worst, float(np.max(np.abs(xa - xb) / scale)))
    if worst > 1e-5:
        fail("features differ: worst relative difference %.3g" % worst)
    print("ok: %d files with the same cells and coordinates; features %s (worst relative "
          "difference %.3g)" % (len(fa), "bit-identical" if exact else "equal to float rounding",
                                worst))


if __name__ == "__main__":
    if sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "same":
        same(sys.argv[2], sys.argv[3], "--exact" in sys.argv)
    else:
        fail("unknown mode")
