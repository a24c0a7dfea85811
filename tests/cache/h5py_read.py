"""cache.h5py: open cache files written by the C writer with h5py and check the documented
layout: what CLAM/TRIDENT-style loaders and users' own scripts rely on."""
import sys

import h5py
import numpy as np

d = sys.argv[1]
fails = []


def check(cond, msg):
    if not cond:
        fails.append(msg)
        print("FAIL:", msg)


def s(v):
    return v.decode() if isinstance(v, bytes) else v


with h5py.File(f"{d}/sample.h5", "r") as f:
    feats, coords = f["features"], f["coords"]
    check(feats.dtype == np.float32, f"features dtype {feats.dtype}")
    check(feats.shape == (300, 24), f"features shape {feats.shape}")
    check(coords.dtype == np.int64, f"coords dtype {coords.dtype}")
    check(coords.shape == (300, 2), f"coords shape {coords.shape}")
    x = feats[:]
    check(np.array_equal(x, (np.arange(300 * 24, dtype=np.float32) * 0.25).reshape(300, 24)),
          "features values")
    c = coords[:]
    check(c[0, 0] == 5000000000 and c[299, 0] == 299 * 37 + 5000000000 and c[5, 1] == 55,
          "coords values")
    check(feats.chunks is not None and feats.chunks[0] >= 64, f"features chunks {feats.chunks}")
    check(feats.compression == "gzip" and feats.shuffle, f"compression {feats.compression}")
    # attributes: h5py gives str for our variable-length UTF-8 strings
    a = f.attrs
    check(isinstance(a["slide_id"], str) and a["slide_id"] == "sample", f"slide_id {a['slide_id']!r}")
    check(int(a["label"]) == 1 and s(a["split"]) == "train", "label/split")
    check(s(a["format"]) == "slidestream-cache" and int(a["version"]) == 1, "format/version")
    check(int(a["complete"]) == 1, "complete")
    fa = feats.attrs
    check(s(fa["encoder"]) == "resnet18" and s(fa["encoder_hash"]) == "00ff", "encoder attrs")
    check(s(fa["feature"]) == "pooled" and s(fa["preprocessing"]).startswith("input=96;"),
          "feature/preprocessing")
    check(s(fa["name"]) == "sample", "features name")
    ca = coords.attrs
    check(int(ca["patch_size"]) == 96 and int(ca["patch_size_level0"]) == 192, "patch sizes")
    check(abs(float(ca["target_mpp"]) - 0.5) < 1e-12 and abs(float(ca["slide_mpp"]) - 0.25) < 1e-12,
          "mpps")
    check(abs(float(ca["target_magnification"]) - 20) < 1e-9
          and abs(float(ca["level0_magnification"]) - 40) < 1e-9, "magnifications")
    check(s(ca["name"]) == "sample", "coords name")
    # our extra datasets
    check(f["cell_ids"].dtype == np.uint64 and f["cell_ids"].shape == (300,), "cell_ids")
    check(int(f["cell_ids"][2]) == 0xF000000000000006, "cell_ids value")
    check(f["centres"].dtype == np.int64 and f["centres"].shape == (300, 2), "centres")
    check(np.array_equal(f["centres"][:], c + 96), "centres values")
    check(f["bboxes"].dtype == np.int32 and f["bboxes"].shape == (300, 4), "bboxes")
    check(f["areas"].dtype == np.uint32 and f["areas"].shape == (300,), "areas")
    check(int(f["areas"][0]) == 4000000000, "areas value")

with h5py.File(f"{d}/sample_empty.h5", "r") as f:
    check(f["features"].shape == (0, 24) and f["features"].dtype == np.float32, "empty features")
    check(f["coords"].shape == (0, 2) and f["coords"].dtype == np.int64, "empty coords")
    check(int(f.attrs["complete"]) == 1, "empty complete")

if fails:
    print(f"cache.h5py: {len(fails)} check(s) failed")
    sys.exit(1)
print("cache.h5py: all checks passed")
