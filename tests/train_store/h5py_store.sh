#!/bin/sh
# train.store.h5py: a crop store written by the C library opens in h5py with the documented
# layout, and a store written by h5py (another tool's choices: chunks of many crops, gzip,
# fixed-length strings, int64 columns) opens in the C reader.
# Usage: h5py_store.sh TEST_EXE h5py_store.py SCRATCH_DIR
set -eu
exe=$1 script=$2 dir=$3
py=${SS_PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import h5py, numpy' 2>/dev/null; then
    echo "skipped: h5py/numpy not importable by $py (install python3-h5py)"
    exit 77
fi
rm -rf "$dir"
"$exe" write-sample "$dir"
"$py" "$script" check "$dir"
"$py" "$script" write "$dir"
"$exe" read-foreign "$dir"
rm -rf "$dir"
