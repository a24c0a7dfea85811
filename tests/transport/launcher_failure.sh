#!/usr/bin/env bash
# stream.launcher_failure — `slidestream run` names the stage that fails: (1) a stage that exits
# with an error at start, (2) a stage killed with SIGKILL in the middle of a run. Both runs
# must exit non-zero, name the stage, stop the others, and write report.json saying so.
set -u
ss=${SLIDESTREAM:?SLIDESTREAM not set}
src=${SS_SOURCE_DIR:?}
dir=$(mktemp -d /tmp/ss-launch.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail=0

cat > "$dir/bad.conf" <<CONF
name = bad
stage tiler = tiler --out @ipc://\${rundir}/t --control >ipc://\${rundir}/c --no-such-flag x.tiff
sink count = count --in >ipc://\${rundir}/t --control @ipc://\${rundir}/c --parts-are-items
CONF
"$ss" run "$dir/bad.conf" rundir="$dir/r1" --quiet > "$dir/o1" 2> "$dir/e1"; rc=$?
cat "$dir/e1"
[ $rc -ne 0 ] || { echo "FAIL: run with a failing stage exited 0"; fail=1; }
grep -q "stage 'tiler' failed (exit 2)" "$dir/e1" || { echo "FAIL: failing stage not named"; fail=1; }
grep -q '"failed_stage": "tiler"' "$dir/r1/report.json" || { echo "FAIL: report lacks failed_stage"; fail=1; }

"$ss" run "$src/pipelines/cells.conf" rundir="$dir/r2" size=6000 --quiet > "$dir/o2" 2> "$dir/e2" &
run=$!
victim=""
for i in $(seq 1 600); do
  victim=$(pgrep -f -- "--name cropper.1" | head -n1)
  [ -n "$victim" ] && [ -s "$dir/r2/logs/tiler.log" ] && break
  sleep 0.1
done
sleep 1
[ -n "$victim" ] && kill -9 "$victim" && echo "killed cropper.1 (pid $victim)"
wait $run; rc=$?
cat "$dir/e2"
[ $rc -ne 0 ] || { echo "FAIL: run with a killed stage exited 0"; fail=1; }
grep -q "stage 'cropper.1' failed (killed by signal 9" "$dir/e2" || { echo "FAIL: killed stage not named"; fail=1; }
grep -q '"status": "failed"' "$dir/r2/report.json" || { echo "FAIL: report status"; fail=1; }
sleep 0.5
if pgrep -f -- "$dir/r2" > /dev/null; then echo "FAIL: stages left running"; pgrep -af -- "$dir/r2"; fail=1; fi
[ $fail -eq 0 ] && echo "PASS: failing stages are named and the run stops"
exit $fail
