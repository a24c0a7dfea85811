#!/usr/bin/env bash
# pipeline.embed_replay — slides → embedding cache end to end on generated slides:
#  * every cell of every bag has exactly one cache row with the right coordinates;
#  * three encoder processes give the same cache content as one (order aside): bit-identical
#    with --deterministic, equal to float rounding with free batching;
#  * replaying the cache into a fresh cache-writer gives bit-identical features;
#  * the file opens in h5py with CLAM/TRIDENT-style features/coords (checked by check_cache.py).
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-embed.XXXXXX)
trap 'rm -rf "$dir"' EXIT
check="$py $(dirname "$0")/check_cache.py"

for n in 1 3; do
  for mode in free det; do
    extra=""; [ $mode = det ] && extra="deterministic=--deterministic"
    "$ss" run "$src/pipelines/embed.conf" rundir="$dir/$mode$n" size=3000 encoders=$n $extra --quiet \
      || { echo "FAIL: run with $n encoder(s), $mode"; exit 1; }
    $check check "$dir/$mode$n/cache" "$dir/$mode$n/bags" || exit 1
  done
done
echo "1 vs 3 encoders, --deterministic:"
$check same "$dir/det1/cache" "$dir/det3/cache" --exact || exit 1
echo "1 vs 3 encoders, free batching:"
$check same "$dir/free1/cache" "$dir/free3/cache" || exit 1
echo "batched vs one cell per pass:"
$check same "$dir/free1/cache" "$dir/det1/cache" || exit 1

# Replay the cache into a second cache-writer: what comes out must be what went in.
ep="ipc://$dir/rp"
"$ss" cache-writer --in "@$ep-data" --control "@$ep-ctl" --dir "$dir/replayed" \
    --checkpoint "$dir/free1/encoder.h5" --quiet &
w=$!
"$ss" replay --out ">$ep-data" --control ">$ep-ctl" --quiet "$dir/free1/cache" || { echo "FAIL: replay"; exit 1; }
wait $w || { echo "FAIL: cache-writer after replay exited $?"; exit 1; }
echo "live vs replayed:"
$check same "$dir/free1/cache" "$dir/replayed" --exact || exit 1
echo "PASS"
