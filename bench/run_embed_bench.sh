#!/usr/bin/env bash
# Slide → embedding cache throughput (issue: encoder stage): cells/s with 1 and 2 encoder
# processes on a generated slide, and the embedding stage's efficiency relative to the bare
# NN-core inference of the same checkpoint measured in the same run, with the same total
# number of threads (2).
#   bench/run_embed_bench.sh [BUILD_DIR=build] [SIZE=12000] [WIDTH=1.0]
set -euo pipefail
build=${1:-build}; size=${2:-12000}; width=${3:-1.0}
root=$(cd "$(dirname "$0")/.." && pwd)
ss="$root/$build/stages/slidestream"
work=$(mktemp -d /tmp/ss-embed-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$ss" checkpoint init --out ck.h5 --width "$width" --input 96 --seed 1 >/dev/null
echo "openblas core: $(OPENBLAS_VERBOSE=2 "$root/$build/bench/embed_infer_bench" ck.h5 32 2 1 2>&1 | grep -o 'Core: [A-Za-z0-9]*' | head -n1 || true) (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
bare=$("$root/$build/bench/embed_infer_bench" ck.h5 32 2 10 | sed -n 's/images_per_s=\([0-9.]*\).*/\1/p')
echo "bare NN-core inference (resnet18 width $width, 96 px, batch 32, 2 threads): $bare images/s"

report() { # rundir encoders threads: cells/s from the cache files and the stages' wall time
  /usr/bin/python3 - "$1" "$bare" "$2" "$3" <<'PY'
import json, sys, glob, h5py
rd, bare, n, t = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
rep = json.load(open(rd + "/report.json"))
cells = sum(h5py.File(p, "r")["features"].shape[0] for p in glob.glob(rd + "/cache/*.h5"))
wall = max(s["wall_s"] for s in rep["stages"])  # the pre steps are excluded
print("%s encoder(s) x %s thread(s): %d cells in %.1f s = %.1f cells/s; efficiency vs bare "
      "inference %.0f%%" % (n, t, cells, wall, cells / wall, 100 * cells / wall / bare))
PY
}

run_one() { # encoders threads_each
  local n=$1 t=$2 rd="$work/run-$1"
  rm -rf "$rd"
  "$ss" run "$root/pipelines/embed.conf" rundir="$rd" checkpoint="$work/ck.h5" size="$size" \
        encoders="$n" threads="$t" --quiet > /dev/null
  report "$rd" "$n" "$t"
}
echo "slide → cache (tiler, 2 cell-croppers, bag-builder, encoders and cache-writer share the 2 cores):"
run_one 1 2
run_one 2 1

# The embedding stage on its own: pre-cropped cells (simulated bags) → encoders → cache, so
# the encoders do nearly all the work; this is the stage's efficiency against bare inference.
sim_one() { # encoders threads_each
  local n=$1 t=$2 rd="$work/sim-$1"
  rm -rf "$rd"
  "$ss" run "$root/pipelines/simulate.conf" rundir="$rd" checkpoint="$work/ck.h5" per_class=1500 \
        bags=24 test_bags=0 bag_size=60 encoders="$n" threads="$t" --quiet > /dev/null
  report "$rd" "$n" "$t"
}
echo "cell images → cache (the embedding stage alone):"
sim_one 1 2
sim_one 2 1
