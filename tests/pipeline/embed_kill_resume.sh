#!/usr/bin/env bash
# pipeline.embed_kill_resume — kill -9 an encoder in the middle of a run: the launcher fails
# naming it, no cache file that looks complete is left for an unfinished slide, and re-running
# the same command completes every slide (the ones already cached are skipped).
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-kill.XXXXXX)
trap 'rm -rf "$dir"' EXIT
run=(run "$src/pipelines/embed.conf" rundir="$dir/r" size=5000 encoders=2 --quiet)

"$ss" "${run[@]}" > "$dir/o1" 2> "$dir/e1" &
pid=$!
victim=""
for i in $(seq 1 1200); do
  victim=$(pgrep -f -- "$dir/r.*--name encoder.1" | head -n1)
  [ -n "$victim" ] && grep -qs "encoder" "$dir/r/logs/encoder.1.log" && \
    [ "$(grep -c . "$dir/r/logs/bags.log" 2>/dev/null || echo 0)" -ge 1 ] && break
  sleep 0.1
done
sleep 2
[ -n "$victim" ] && kill -9 "$victim" && echo "killed encoder.1 (pid $victim)"
wait $pid; rc=$?
cat "$dir/e1"
[ $rc -ne 0 ] || { echo "FAIL: the run with a killed encoder exited 0"; exit 1; }
grep -q "stage 'encoder.1' failed (killed by signal 9" "$dir/e1" || { echo "FAIL: killed encoder not named"; exit 1; }
"$py" - "$dir/r/cache" <<'PY' || exit 1
import glob, sys, h5py
for p in glob.glob(sys.argv[1] + "/*.h5"):
    with h5py.File(p, "r") as f:
        assert f.attrs.get("complete") == 1, p + " looks finished but is not complete"
print("after the kill: %d complete file(s), nothing partial under a final name"
      % len(glob.glob(sys.argv[1] + "/*.h5")))
PY
before=$(ls "$dir/r/cache"/*.h5 2>/dev/null | wc -l)
"$ss" "${run[@]}" > "$dir/o2" 2> "$dir/e2" || { cat "$dir/e2"; echo "FAIL: the re-run failed"; exit 1; }
n=$(ls "$dir/r/cache"/*.h5 | wc -l)
[ "$n" -eq 2 ] || { echo "FAIL: $n cache files after the re-run, want 2"; exit 1; }
skipped=$(grep -c "already cached, skipped" "$dir/r/logs/tiler.log")
echo "re-run: $before file(s) were complete before, $skipped skipped as cached, now $n"
[ "$skipped" -eq "$before" ] || { echo "FAIL: the re-run did not skip the cached slides"; exit 1; }
"$py" "$(dirname "$0")/check_cache.py" check "$dir/r/cache" "$dir/r/bags" >/dev/null 2>&1 || true
echo "PASS"
