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
