#!/usr/bin/env bash
# pipeline.twohost_fault — faults across hosts. The embedding pipeline runs on two simulated
# hosts (network namespaces joined by a veth pair, scripts/twohost.sh), tcp with CURVE between
# them: the head (tiler, bag-builder, cache-writer, a cropper and an encoder) on host 1, a
# cropper and an encoder on host 2. Once the first slide's cache file is in place, host 2's
# encoders are killed (SIGKILL, every encoder process of its namespace). The cache-writer must
# report the cells that never arrived (exit 3, INCOMPLETE naming the bag and what it lacks),
# write no file for an incomplete bag and keep the complete ones; re-running both hosts must
# complete every slide without re-embedding the ones already complete (the tiler skips them,
# their files are untouched), and the cache must hold every cell of every bag once.
# Skips, saying why, without root or network namespaces.
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
export SLIDESTREAM=$ss
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "network namespaces (ip netns) need root"
command -v ip >/dev/null && command -v taskset >/dev/null || skip "needs ip (iproute2) and taskset"
"$py" -c "import h5py, numpy" 2>/dev/null || skip "$py has no h5py/numpy"
. "$src/scripts/twohost.sh"
d=$(mktemp -d /tmp/ss-2host.XXXXXX)
trap 'twohost_stop; twohost_down; rm -rf "$d"' EXIT
twohost_up 2>"$d/up.err" || skip "cannot make two network namespaces joined by veth: $(cat "$d/up.err")"
cores=$(nproc); c2=$(( cores > 1 ? 1 : 0 ))

"$ss" checkpoint init --out "$d/ck.h5" --width 0.25 --input 96 --seed 1 > /dev/null || exit 1
for i in 1 2 3; do
  "$ss" synth slide --out "$d/s$i.tiff" --width 4000 --height 4000 --witness-rate 0.1 \
    --seed $((20 + i)) --quiet --manifest "$d/manifest.csv" --label $((i % 2)) 2>/dev/null || exit 1
done
"$ss" keys new "$d/keys" > /dev/null || { echo "FAIL: keys new"; exit 1; }
export TWOHOST_SEC="--keys $d/keys" TWOHOST_IDLE=5

# --- run 1: host 2's encoders die once the first slide is complete ---------------------------
twohost_head "$TWOHOST-1" 0 "$d/run1" "$d/ck.h5" "$d/manifest.csv" "$d/cache"
twohost_workers "$TWOHOST-1" 0 "$d/run1" "$d/ck.h5" h1
twohost_workers "$TWOHOST-2" "$c2" "$d/run1" "$d/ck.h5" h2
first=""
for i in $(seq 1 1800); do
  first=$(ls "$d/cache"/*.h5 2>/dev/null | head -n1)
  [ -n "$first" ] && break
  kill -0 "$TWOHOST_CACHE_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$first" ] || { tail -n 5 "$d"/run1/logs/*.log; echo "FAIL: no cache file appeared"; exit 1; }
n=$(twohost_kill "$TWOHOST-2" encoder)
echo "after $(basename "$first"): killed $n encoder(s) on host 2"
[ "$n" -ge 1 ] || { echo "FAIL: no encoder to kill on host 2"; exit 1; }
wait "$TWOHOST_CACHE_PID"; rc=$?
twohost_stop
echo "run 1: cache-writer exit $rc"
grep "INCOMPLETE\|complete$" "$d/run1/logs/cache.log"
[ $rc -eq 3 ] || { echo "FAIL: the cache-writer exited $rc after host 2's encoders died, want 3"; exit 1; }
grep -q "INCOMPLETE bag '.*': .*; no cache file written" "$d/run1/logs/cache.log" \
  || { echo "FAIL: the missing cells are not reported by bag"; exit 1; }
"$py" - "$d/cache" "$d/run1/logs/cache.log" <<'PY' || exit 1
import glob, os, re, sys, h5py
done = sorted(os.path.basename(p)[:-3] for p in glob.glob(sys.argv[1] + "/*.h5"))
log = open(sys.argv[2]).read()
bad = sorted(set(re.findall(r"INCOMPLETE bag '([^']+)'", log)))
for p in glob.glob(sys.argv[1] + "/*.h5"):
    with h5py.File(p, "r") as f:
        assert f.attrs.get("complete") == 1, p + " looks finished but is not complete"
assert not set(done) & set(bad), "a file was written for an incomplete bag: %s" % (set(done) & set(bad))
assert done and bad, "want complete and incomplete slides, got %s and %s" % (done, bad)
assert not glob.glob(sys.argv[1] + "/*.tmp*"), "a temporary file was left behind"
print("run 1: complete %s; incomplete (reported, no file) %s" % (done, bad))
PY
before=$(ls "$d/cache"/*.h5 | wc -l)
sums1=$(cd "$d/cache" && sha256sum *.h5)

# --- run 2: the same command on both hosts completes the rest -------------------------------
twohost_head "$TWOHOST-1" 0 "$d/run2" "$d/ck.h5" "$d/manifest.csv" "$d/cache"
twohost_workers "$TWOHOST-1" 0 "$d/run2" "$d/ck.h5" h1
twohost_workers "$TWOHOST-2" "$c2" "$d/run2" "$d/ck.h5" h2
wait "$TWOHOST_CACHE_PID"; rc=$?
twohost_stop
tail -n 1 "$d/run2/logs/cache.log"
[ $rc -eq 0 ] || { tail -n 5 "$d"/run2/logs/*.log; echo "FAIL: the re-run's cache-writer exited $rc"; exit 1; }
skipped=$(grep -c "already cached, skipped" "$d/run2/logs/tiler.log")
written=$(grep -c "embeddings$" "$d/run2/logs/cache.log")
echo "run 2: $skipped slide(s) skipped as cached, $written written"
[ "$skipped" -eq "$before" ] || { echo "FAIL: $skipped skipped, want the $before complete ones"; exit 1; }
[ "$written" -eq $((3 - before)) ] || { echo "FAIL: $written files written, want $((3 - before))"; exit 1; }
while read -r sum name; do
  [ "$(cd "$d/cache" && sha256sum "$name" | cut -d' ' -f1)" = "$sum" ] \
    || { echo "FAIL: $name was rewritten"; exit 1; }
done <<< "$sums1"
# Every bag of run 1's manifest (which saw every cell) is in the cache, one row per cell.
"$py" "$src/tests/pipeline/check_cache.py" check "$d/cache" "$d/run1/bags" || exit 1
echo "PASS: the lost cells were reported, and the re-run completed only what was missing"
