#!/usr/bin/env bash
# Two hosts against one (issue #14): the embedding pipeline (tiler → cell-cropper → bag-builder
# → encoder → cache-writer, tcp endpoints) on two simulated hosts — network namespaces joined by
# a veth pair (scripts/twohost.sh), each pinned to its own core — against the same pipeline on
# one host pinned to one core. Host 1 runs the head (tiler, bag-builder, cache-writer) and one
# worker pair (a cell-cropper and an encoder); host 2 one worker pair. Reports cells/s of both,
# their ratio (the goal is >= 1.8x), and what CURVE costs against plain tcp at the same load:
# each placement runs with CURVE (--keys) and with plain tcp (--insecure), the four cases
# interleaved REPS times; medians are reported, with the cores the stages kept busy (their CPU
# seconds over the wall time: below 1 per host means other work on the machine took a share)
# and their CPU time per cell, which other load hardly moves. Checks that the two-host cache
# equals the one-host one. Needs root (ip netns), taskset and 2 cores; prints the load average.
#   bench/run_twohost_bench.sh [BUILD_DIR=build] [SIZE=6000] [SLIDES=2] [REPS=3]
set -euo pipefail
build=${1:-build}; size=${2:-6000}; nslides=${3:-2}; reps=${4:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
export SLIDESTREAM="$root/$build/stages/slidestream"
py=/usr/bin/python3
[ "$(id -u)" -eq 0 ] || { echo "run_twohost_bench: needs root (ip netns)"; exit 77; }
[ "$(nproc)" -ge 2 ] || { echo "run_twohost_bench: needs 2 cores, this machine has $(nproc)"; exit 77; }
. "$root/scripts/twohost.sh"
work=$(mktemp -d /tmp/ss-2host-bench.XXXXXX)
trap 'twohost_stop 2>/dev/null; twohost_down; rm -rf "$work"' EXIT
twohost_up
ss=$SLIDESTREAM
"$ss" checkpoint init --out "$work/ck.h5" --width 0.25 --input 96 --seed 1 > /dev/null
for i in $(seq 1 "$nslides"); do
  "$ss" synth slide --out "$work/s$i.tiff" --width "$size" --height "$size" --witness-rate 0.1 \
    --seed $((40 + i)) --quiet --manifest "$work/manifest.csv" --label $((i % 2)) 2>/dev/null
done
"$ss" keys new "$work/keys" > /dev/null
export TWOHOST_IDLE=30

# CPU seconds (user + system) of the children in `times` output files $2 minus $1. `times` is
# redirected, never piped or substituted: a subshell would count its own children.
cpu_between() {
  "$py" - "$1" "$2" <<'PY'
import re, sys
def cpu(path):
    line = open(path).read().splitlines()[1]
    return sum(float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))
print("%.1f" % (cpu(sys.argv[2]) - cpu(sys.argv[1])))
PY
}

# One run: "1" (host 1 alone, core 0) or "2" (and host 2, core 1); "curve" or "plain".
# Prints "cells seconds cpu_seconds host2_cpu_seconds" (the stages' CPU time: how much of the
# cores they got, and how much of it host 2's);
# the run's cache stays in $work/cache-HOSTS-SEC.
run_case() {
  local hosts=$1 sec=$2 dir="$work/run-$1-$2" t0 t1 rc
  rm -rf "$dir" "$work/cache-$hosts-$sec"
  if [ "$sec" = curve ]; then TWOHOST_SEC="--keys $work/keys"; else TWOHOST_SEC=--insecure; fi
  export TWOHOST_SEC
  times > "$work/times0"
  t0=$(date +%s.%N)
  twohost_head "$TWOHOST-1" 0 "$dir" "$work/ck.h5" "$work/manifest.csv" "$work/cache-$hosts-$sec"
  twohost_workers "$TWOHOST-1" 0 "$dir" "$work/ck.h5" h1
  [ "$hosts" = 2 ] && twohost_workers "$TWOHOST-2" 1 "$dir" "$work/ck.h5" h2
  rc=0
  wait "$TWOHOST_CACHE_PID" || rc=$?
  t1=$(date +%s.%N)
  local cpu2=0 # host 2's workers are still running: their CPU time so far is all of it
  [ "$hosts" = 2 ] && cpu2=$(twohost_cpu "$TWOHOST-2")
  twohost_stop
  times > "$work/times1"
  if [ $rc -ne 0 ]; then
    tail -n 3 "$dir"/logs/*.log >&2
    echo "run_twohost_bench: $hosts host(s), $sec: the cache-writer exited $rc" >&2
    return 1
  fi
  local cells
  cells=$(sed -n 's/^cache-writer: [0-9]* files, \([0-9]*\) embeddings.*complete$/\1/p' "$dir/logs/cache.log")
  echo "$cells $("$py" -c "print('%.3f' % ($t1 - $t0))") $(cpu_between "$work/times0" "$work/times1") $cpu2"
}

echo "two-host benchmark: $nslides generated slide(s) of ${size}x${size} px, ResNet-18 width 0.25,"
echo "  96 px crops, one cell-cropper and one encoder (1 thread) per host; $reps rounds"
echo "  OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A res
for r in $(seq 1 "$reps"); do
  for c in 1-curve 2-curve 1-plain 2-plain; do
    out=$(run_case "${c%-*}" "${c#*-}")
    res[$c]="${res[$c]:-} $out"
    echo "  round $r: ${c%-*} host(s), ${c#*-}: $out (cells, s, cpu s, host 2 cpu s)  load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
echo "  load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$root/tests/pipeline/check_cache.py" same "$work/cache-1-curve" "$work/cache-2-curve" \
  | sed 's/^/  two hosts vs one: /'
"$py" - "${res[1-curve]}" "${res[2-curve]}" "${res[1-plain]}" "${res[2-plain]}" <<'PY'
import statistics, sys
def rate(s):
    v = list(map(float, s.split()))
    runs = [v[i] / v[i + 1] for i in range(0, len(v), 4)]
    return statistics.median(runs), int(v[0]), runs
def cores(s):  # the cores the stages kept busy (cpu seconds / wall seconds): all, host 2
    v = list(map(float, s.split()))
    return (statistics.median(v[i + 2] / v[i + 1] for i in range(0, len(v), 4)),
            statistics.median(v[i + 3] / v[i + 1] for i in range(0, len(v), 4)))
one_c, n, r1c = rate(sys.argv[1]); two_c, _, r2c = rate(sys.argv[2])
one_p, _, r1p = rate(sys.argv[3]); two_p, _, r2p = rate(sys.argv[4])
f = lambda rs: ", ".join("%.1f" % x for x in rs)
print("cells/s (median of rounds; %d cells a run):" % n)
a = sys.argv
def busy(s):
    c, c2 = cores(s)
    return "busy cores %.2f" % c + (" (host 1 %.2f, host 2 %.2f)" % (c - c2, c2) if c2 else "")
print("  CURVE  1 host (1 core):   %6.1f  [%s]  %s" % (one_c, f(r1c), busy(a[1])))
print("  CURVE  2 hosts (2 cores): %6.1f  [%s]  %s" % (two_c, f(r2c), busy(a[2])))
print("  plain  1 host (1 core):   %6.1f  [%s]  %s" % (one_p, f(r1p), busy(a[3])))
print("  plain  2 hosts (2 cores): %6.1f  [%s]  %s" % (two_p, f(r2p), busy(a[4])))
print("two hosts / one host: %.2fx with CURVE, %.2fx plain tcp (goal >= 1.8x)" %
      (two_c / one_c, two_p / one_p))
print("CURVE costs %.1f%% of plain tcp's throughput on 1 host, %.1f%% on 2 hosts" %
      (100 * (1 - one_c / one_p), 100 * (1 - two_c / two_p)))
def ms_per_cell(s):  # the stages' CPU time per cell (robust to other load on the machine)
    v = list(map(float, s.split()))
    return statistics.median(1000 * v[i + 2] / v[i] for i in range(0, len(v), 4))
cc = [ms_per_cell(x) for x in a[1:5]]
print("CPU per cell, all stages: CURVE %.1f / %.1f ms, plain %.1f / %.1f ms (1 / 2 hosts): "
      "CURVE adds %.1f%% / %.1f%%" % (cc[0], cc[1], cc[2], cc[3], 100 * (cc[0] / cc[2] - 1),
                                      100 * (cc[1] / cc[3] - 1)))
PY
