#!/usr/bin/env bash
# pipeline.embed_replay — slides → embedding cache end to end on generated slides:
#  * every cell of every bag has exactly one cache row with the right coordinates;
#  * three encoder processes give the same cache content as one (order aside);
#  * replaying the cache into a fresh cache-writer gives bit-identical features;
#  * the file opens in h5py with CLAM/TRIDENT-style features/coords (checked by check_cache.py).
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-embed.XXXXXX)
trap 'rm -rf "$dir"' EXIT
check="$py $(dirname "$0")/check_cache.py"

"$ss" run "$src/pipelines/embed.conf" rundir="$dir/one" size=3000 encoders=1 --quiet || { echo "FAIL: run with 1 encoder"; exit 1; }
$check check "$dir/one/cache" "$dir/one/bags" || exit 1
"$ss" run "$src/pipelines/embed.conf" rundir="$dir/three" size=3000 encoders=3 --quiet || { echo "FAIL: run with 3 encoders"; exit 1; }
$check check "$dir/three/cache" "$dir/three/bags" || exit 1
echo "1 vs 3 encoders:"
$check same "$dir/one/cache" "$dir/three/cache" || exit 1

# Replay the cache into a second cache-writer: what comes out must be what went in.
ep="ipc://$dir/rp"
"$ss" cache-writer --in "@$ep-data" --control "@$ep-ctl" --dir "$dir/replayed" \
    --checkpoint "$dir/one/encoder.h5" --quiet &
w=$!
"$ss" replay --out ">$ep-data" --control ">$ep-ctl" --quiet "$dir/one/cache" || { echo "FAIL: replay"; exit 1; }
wait $w || { echo "FAIL: cache-writer after replay exited $?"; exit 1; }
echo "live vs replayed:"
$check same "$dir/one/cache" "$dir/replayed" --exact || exit 1
echo "PASS"
