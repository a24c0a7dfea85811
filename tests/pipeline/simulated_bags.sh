#!/usr/bin/env bash
# pipeline.simulated_bags — pre-cropped cell images as a cell stream: `bags simulate` bags are
# streamed by the bag-builder through encoders into the cache; every bag gets one complete
# file with one row per cell, its label and split.
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-sim.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$ss" run "$src/pipelines/simulate.conf" rundir="$dir/r" --quiet || { echo "FAIL: simulate run"; exit 1; }
"$py" - "$dir/r" <<'PY' || exit 1
import csv, sys, h5py
r = sys.argv[1]
bags = list(csv.DictReader(open(r + "/bags/bags.csv")))
assert len(bags) == 8, len(bags)
for b in bags:
    with h5py.File("%s/cache/%s.h5" % (r, b["bag_id"]), "r") as f:
        assert f.attrs["complete"] == 1
        assert f["features"].shape[0] == int(b["n_cells"]), (b, f["features"].shape)
        assert int(f.attrs["label"]) == int(b["label"]) and f.attrs["split"] == b["split"], b
        ids = sorted(f["cell_ids"][()].tolist())
        assert ids == list(range(int(b["n_cells"]))), "cell ids are positions in the bag"
print("PASS: %d simulated bags cached, one row per cell, labels and splits kept" % len(bags))
PY
