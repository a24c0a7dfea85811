"""train.store.h5py: check a crop store written by the C writer with h5py (`check DIR`), and
write one as another tool would (`write DIR`). The reference cells mirror test_train_store.c
(make_crop, ref_info, add_bags)."""
import sys

import h5py
import numpy as np

SPLITS = ["train", "val", "test"]
fails = []


def check(cond, msg):
    if not cond:
        fails.append(msg)
        print("FAIL:", msg)


def ref_crops(n, c):
    i = np.arange(n, dtype=np.int64)[:, None, None, None]
    y = np.arange(c)[None, :, None, None]
    x = np.arange(c)[None, None, :, None]
    ch = np.arange(3)[None, None, None, :]
    crops = ((7 * i + 3 * y + 5 * x + 11 * ch) & 255).astype(np.uint8)
    flat = crops.reshape(n, -1)
    for b in range(4):
        flat[:, b] = (np.arange(n) >> (8 * b)) & 255
    return crops


def ref_cells(n):
    i = np.arange(n, dtype=np.int64)
    bag = (100 + (i % 7) * 10).astype(np.uint32)
    label = (i % 3 - 1).astype(np.int32)
    cell = (0x100000000 * (i % 5) + i).astype(np.uint64)
    centre = np.stack([i * 17 - 500, i * 3 + 1000000000000], axis=1)
    source = [f"slide_{k % 3}" if k < n // 2 else f"cells/img_{k:05d}.png" for k in range(n)]
    return bag, label, cell, centre, source


def check_sample(d):
    n, c = 300, 16
    with h5py.File(f"{d}/sample.h5", "r") as f:
        a = dict(f.attrs)
        check(a.get("format") == "slidestream-crops", f"format {a.get('format')!r}")
        check(a.get("version") == 1 and a.get("crop_size") == c and a.get("count") == n,
              f"attrs {a}")
        crops = f["crops"]
        check(crops.dtype == np.uint8 and crops.shape == (n, c, c, 3),
              f"crops {crops.dtype} {crops.shape}")
        check(crops.chunks == (1, c, c, 3), f"crops chunks {crops.chunks}")
        check(crops.compression is None, f"crops compression {crops.compression}")
        check(crops.attrs.get("channels") == "RGB", f"channels {crops.attrs.get('channels')!r}")
        check(np.array_equal(crops[:], ref_crops(n, c)), "crop pixels")
        check(np.array_equal(crops[123], ref_crops(n, c)[123]), "crop 123 by index")
        bag, label, cell, centre, source = ref_cells(n)
        for name, want, dtype in [("bag", bag, np.uint32), ("label", label, np.int32),
                                  ("cell_id", cell, np.uint64), ("centre", centre, np.int64)]:
            got = f[name]
            check(got.dtype == dtype, f"{name} dtype {got.dtype}")
            check(np.array_equal(got[:], want), f"{name} values")
        check(f["source"].dtype == np.int32, f"source dtype {f['source'].dtype}")
        names = f["sources"].asstr()[:]
        check([names[k] for k in f["source"][:]] == source, "sources by index")
        check(len(set(names)) == len(names), "sources distinct")
        ids = f["bag_ids"][:]
        check(ids.dtype == np.uint32 and list(ids) == [100, 110, 120, 130, 140, 150, 160, 999],
              f"bag_ids {ids}")
        bn = list(f["bag_names"].asstr()[:])
        bl = list(f["bag_labels"][:])
        bs = list(f["bag_splits"].asstr()[:])
        for k, bid in enumerate(ids):
            if bid == 150:
                want = ("", -1, "")
            elif bid == 999:
                want = ("empty bag", 0, "")
            else:
                want = (f"bag-{bid}", (bid // 10) % 2, SPLITS[bid // 10 % 3])
            check((bn[k], bl[k], bs[k]) == want, f"bag {bid}: {(bn[k], bl[k], bs[k])} != {want}")
    with h5py.File(f"{d}/sample_empty.h5", "r") as f:
        check(f.attrs["count"] == 0 and f["crops"].shape == (0, c, c, 3), "empty store shape")
        check(f["sources"].shape == (0,) and f["bag_ids"].shape == (0,), "empty tables")


def write_foreign(d):
    n, c = 50, 16
    bag, label, cell, centre, source = ref_cells(n)
    names = sorted(set(source))
    with h5py.File(f"{d}/foreign.h5", "w") as f:
        f.attrs["format"] = np.bytes_("slidestream-crops")  # fixed-length, not variable
        f.attrs["version"] = np.int32(1)
        f.attrs["crop_size"] = np.int16(c)
        f.attrs["count"] = np.uint64(n)
        f.create_dataset("crops", data=ref_crops(n, c), chunks=(10, c, c, 3), compression="gzip")
        f.create_dataset("bag", data=bag.astype(np.int64))
        f.create_dataset("label", data=label.astype(np.int64))
        f.create_dataset("cell_id", data=cell)
        f.create_dataset("centre", data=centre)
        f.create_dataset("source", data=np.array([names.index(s) for s in source]))
        f.create_dataset("sources", data=np.array(names, dtype="S"))
        ids = np.arange(100, 170, 10)
        f.create_dataset("bag_ids", data=ids)
        f.create_dataset("bag_names", data=np.array([f"bag-{i}" for i in ids], dtype="S"))
        f.create_dataset("bag_labels", data=(ids // 10) % 2)
        f.create_dataset("bag_splits", data=[SPLITS[i // 10 % 3] for i in ids],
                         dtype=h5py.string_dtype())


mode, d = sys.argv[1], sys.argv[2]
if mode == "check":
    check_sample(d)
    if fails:
        print(f"train.store.h5py: {len(fails)} check(s) failed")
        sys.exit(1)
    print("train.store.h5py: h5py reads the C writer's store")
else:
    write_foreign(d)
