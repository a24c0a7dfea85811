#!/usr/bin/env bash
# stream.stream_killed_worker — tiler → cell-cropper ×2 → count over real ipc:// sockets, each
# stage a separate process. One cropper is killed with SIGKILL mid-stream: the tiles queued to
# it are lost, and the collector must notice and name what is missing (exit 3), not report
# success. A control run without the kill must be complete (exit 0).
set -u
ss=${SLIDESTREAM:?SLIDESTREAM not set}
dir=$(mktemp -d /tmp/ss-kill.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
"$ss" synth slide --out "$dir/s.tiff" --width 4000 --height 4000 --mpp 0.25 --seed 3 --quiet || exit 1

run() { # $1 = kill or keep
  local tag=$1 ep="ipc://$dir/$1"
  "$ss" count --in "@$ep-cells" --control "@$ep-ctl" --idle-timeout 3 --report "$dir/$tag.json" \
      --quiet > "$dir/$tag.out" 2> "$dir/$tag.err" &
  local count=$!
  "$ss" cell-cropper --in ">$ep-tiles" --out ">$ep-cells" --control ">$ep-ctl" --quiet 2>>"$dir/$tag.w0" &
  local w0=$!
  "$ss" cell-cropper --in ">$ep-tiles" --out ">$ep-cells" --control ">$ep-ctl" --quiet 2>>"$dir/$tag.w1" &
  local w1=$!
  "$ss" tiler --out "@$ep-tiles" --control ">$ep-ctl" --tile 256 --hwm 4 --quiet "$dir/s.tiff" 2>"$dir/$tag.tiler" &
  local tiler=$!
  if [ "$tag" = kill ]; then
    sleep 2
    kill -9 $w1 && echo "killed worker pid $w1 mid-stream"
  fi
  wait $tiler; local trc=$?
  wait $count; local crc=$?
  kill $w0 $w1 2>/dev/null; wait $w0 $w1 2>/dev/null
  echo "$tag: tiler exit $trc, count exit $crc"
  cat "$dir/$tag.out"; cat "$dir/$tag.err"
  return $crc
}

run keep; keep=$?
if [ $keep -ne 0 ]; then echo "FAIL: the run without a kill was not complete (exit $keep)"; exit 1; fi
run kill; k=$?
if [ $k -ne 3 ]; then echo "FAIL: after killing a worker the collector exited $k, want 3 (incomplete)"; exit 1; fi
grep -q "INCOMPLETE slide 0: .* never reported" "$dir/kill.err" || { echo "FAIL: loss not described"; exit 1; }
grep -q '"complete": false' "$dir/kill.json" || { echo "FAIL: report does not say incomplete"; exit 1; }
echo "PASS: the killed worker's loss was detected and reported"
