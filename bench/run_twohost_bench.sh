#!/usr/bin/env bash
# Two hosts against one (issue #14): the embedding pipeline (tiler → cell-cropper → bag-builder
# → encoder → cache-writer, tcp endpoints) on two simulated hosts — network namespaces joined by
# a veth pair (scripts/twohost.sh), each pinned to its own core — against the same pipeline on
# one host pinned to one core. Host 1 runs the head (tiler, bag-builder, cache-writer) and one
# worker pair (a cell-cropper and an encoder); host 2 one worker pair. Reports cells/s of both,
# their ratio (the goal is >= 1.8x), and what CURVE costs against plain tcp at the same load:
# each placement runs with CURVE (--keys) and with plain tcp (--insecure), the four cases
# interleaved REPS times. Each run waits for an idle machine first, and a run during which the
# rest of the machine still used more than 0.15 cores is left out of the medians (marked *);
# beside cells/s: the cores the stages kept busy per host (CPU seconds over wall time), and
# their CPU time per cell, which other load hardly moves. Checks that the two-host cache
# equals the one-host one. Needs root (ip netns), taskset and 2 cores; prints the load average.
#   bench/run_twohost_bench.sh [BUILD_DIR=build] [SIZE=8000] [SLIDES=2] [REPS=5]
#   QUIET_WAIT=S: before each run, wait up to S seconds (default 900) for the machine to be idle
set -euo pipefail
build=${1:-build}; size=${2:-8000}; nslides=${3:-2}; reps=${4:-5}
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

# Busy CPU seconds of the whole machine so far (/proc/stat: user, nice, system, irq, softirq).
machine_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat
}

# Wait (up to QUIET_WAIT seconds, default 900) until the rest of the machine uses less than
# 0.15 cores over 3 s: with the kernel's autogroup scheduling, one busy process of another
# session takes a core's worth from pinned stages whatever its nice value, and the two-host
# case would be measured on fewer cores than it is given.
wait_quiet() {
  local waited=0 a b
  while [ "$waited" -lt "${QUIET_WAIT:-900}" ]; do
    a=$(machine_cpu); sleep 3; b=$(machine_cpu)
    "$py" -c "import sys; sys.exit(0 if $b - $a < 0.45 else 1)" && break
    waited=$((waited + 3))
  done
  [ "$waited" -gt 0 ] && echo "  (waited ${waited} s for the machine to be idle)" >&2
  return 0
}

# One run: "1" (host 1 alone, core 0) or "2" (and host 2, core 1); "curve" or "plain".
# Prints "cells seconds cpu_seconds host2_cpu_seconds others_cpu_seconds": the stages' CPU time
# (how much of the cores they got), host 2's part of it, and what the rest of the machine used
# meanwhile;
# the run's cache stays in $work/cache-HOSTS-SEC.
run_case() {
  local hosts=$1 sec=$2 dir="$work/run-$1-$2" t0 t1 rc
  rm -rf "$dir" "$work/cache-$hosts-$sec"
  if [ "$sec" = curve ]; then TWOHOST_SEC="--keys $work/keys"; else TWOHOST_SEC=--insecure; fi
  export TWOHOST_SEC
  wait_quiet
  times > "$work/times0"
  local m0; m0=$(machine_cpu)
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
  local m1; m1=$(machine_cpu)
  if [ $rc -ne 0 ]; then
    tail -n 3 "$dir"/logs/*.log >&2
    echo "run_twohost_bench: $hosts host(s), $sec: the cache-writer exited $rc" >&2
    return 1
  fi
  local cells
  cells=$(sed -n 's/^cache-writer: [0-9]* files, \([0-9]*\) embeddings.*complete$/\1/p' "$dir/logs/cache.log")
  local cpu; cpu=$(cpu_between "$work/times0" "$work/times1")
  echo "$cells $("$py" -c "print('%.3f %s %s %.1f' % ($t1 - $t0, $cpu, $cpu2, max(0, $m1 - $m0 - $cpu)))")"
}

echo "two-host benchmark: $nslides generated slide(s) of ${size}x${size} px, ResNet-18 width 0.25,"
echo "  96 px crops, one cell-cropper and one encoder (1 thread) per host; $reps rounds"
echo "  OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A res
for r in $(seq 1 "$reps"); do
  for c in 1-curve 2-curve 1-plain 2-plain; do
    out=$(run_case "${c%-*}" "${c#*-}")
    res[$c]="${res[$c]:-} $out"
    echo "  round $r: ${c%-*} host(s), ${c#*-}: $out (cells, s, cpu s, host 2, others)  load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
echo "  load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$root/tests/pipeline/check_cache.py" same "$work/cache-1-curve" "$work/cache-2-curve" \
  | sed 's/^/  two hosts vs one: /'
"$py" - "${res[1-curve]}" "${res[2-curve]}" "${res[1-plain]}" "${res[2-plain]}" <<'PY'
import statistics, sys
med = statistics.median
def runs(arg):  # (cells, wall s, stages' cpu s, host 2's cpu s, the rest of the machine's cpu s)
    v = list(map(float, arg.split()))
    return [v[i:i + 5] for i in range(0, len(v), 5)]
# A run during which the rest of the machine kept more than 0.15 cores busy took part of its
# cores from the stages; medians are of the other runs when a case has any.
clean = lambda r: r[4] / r[1] <= 0.15
cases = [runs(a) for a in sys.argv[1:5]]
used = [[r for r in rs if clean(r)] or rs for rs in cases]
rate = [med(r[0] / r[1] for r in rs) for rs in used]
names = ["CURVE  1 host (1 core):  ", "CURVE  2 hosts (2 cores):", "plain  1 host (1 core):  ",
         "plain  2 hosts (2 cores):"]
print("cells/s, median of the runs the rest of the machine left alone (%d cells a run):"
      % int(cases[0][0][0]))
for k in range(4):
    rs, us = cases[k], used[k]
    every = ", ".join("%.1f%s" % (r[0] / r[1], "" if clean(r) else "*") for r in rs)
    busy = med(r[2] / r[1] for r in us)
    h2 = med(r[3] / r[1] for r in us)
    host = " (host 1 %.2f, host 2 %.2f)" % (busy - h2, h2) if h2 else ""
    print("  %s %6.1f  [%s]  busy cores %.2f%s" % (names[k], rate[k], every, busy, host))
print("  (* the rest of the machine used more than 0.15 cores during that run: left out)")
print("two hosts / one host: %.2fx with CURVE, %.2fx plain tcp (goal >= 1.8x)" %
      (rate[1] / rate[0], rate[3] / rate[2]))
print("CURVE costs %.1f%% of plain tcp's throughput on 1 host, %.1f%% on 2 hosts" %
      (100 * (1 - rate[0] / rate[2]), 100 * (1 - rate[1] / rate[3])))
# The stages' CPU time per cell: what CURVE costs, hardly moved by other load.
cc = [med(1000 * r[2] / r[0] for r in rs) for rs in cases]
print("CPU per cell, all stages: CURVE %.1f / %.1f ms, plain %.1f / %.1f ms (1 / 2 hosts): "
      "CURVE adds %.1f%% / %.1f%%" % (cc[0], cc[1], cc[2], cc[3], 100 * (cc[0] / cc[2] - 1),
                                      100 * (cc[1] / cc[3] - 1)))
PY
