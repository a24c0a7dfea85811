#!/usr/bin/env bash
# stream.stop_blocked — a stage blocked at its high-water mark (nobody takes its tiles) stops
# promptly on SIGTERM instead of hanging: the send gives up and queued data is dropped.
set -u
ss=${SLIDESTREAM:?}
dir=$(mktemp -d /tmp/ss-blk.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$ss" synth slide --out "$dir/s.tiff" --width 3000 --height 3000 --quiet || exit 1
"$ss" tiler --out "@ipc://$dir/t" --control ">ipc://$dir/c" --hwm 2 --quiet "$dir/s.tiff" &
pid=$!
sleep 2
kill -0 $pid 2>/dev/null || { echo "FAIL: the tiler ended without a consumer"; exit 1; }
kill -TERM $pid
for i in $(seq 1 30); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then kill -9 $pid; echo "FAIL: still running 3 s after SIGTERM"; exit 1; fi
wait $pid; echo "PASS: the blocked tiler stopped on SIGTERM (exit $?)"
