#!/bin/sh
# cache.h5py: a cache file written by the C library opens in h5py (Debian's python3-h5py) with
# the documented layout. Usage: h5py_read.sh TEST_CACHE_EXE h5py_read.py SCRATCH_DIR
set -eu
exe=$1 script=$2 dir=$3
py=${SS_PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import h5py, numpy' 2>/dev/null; then
    echo "skipped: h5py/numpy not importable by $py (install python3-h5py)"
    exit 77
fi
rm -rf "$dir"
"$exe" write-sample "$dir"
"$py" "$script" "$dir"
# and the other way: a TRIDENT-style file written by h5py opens in the C reader
"$py" - "$dir/trident.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    d = f.create_dataset("features", data=(np.arange(40, dtype=np.float32) * 0.5).reshape(5, 8),
                         chunks=(1, 8), maxshape=(None, 8))
    d.attrs["encoder"] = "conch_v15"
    d.attrs["name"] = "trident"
    d.attrs["savetodir"] = "None"
    c = f.create_dataset("coords", data=np.array([[100 * i, 7 * i] for i in range(5)], dtype=np.int64))
    for k, v in dict(patch_size=np.int64(256), patch_size_level0=np.int64(512), overlap=0,
                     level0_magnification=40, target_magnification=20, name="trident",
                     level0_width=4000, level0_height=3000, savetodir="None").items():
        c.attrs[k] = v
PY
"$exe" read-foreign "$dir"
