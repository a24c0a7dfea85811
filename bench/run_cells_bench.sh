#!/usr/bin/env bash
# Slide → cells throughput: tiles/s and cells/s of tiler → cell-cropper ×2 → collector on a
# generated slide (default 32000² ≈ 1 gigapixel at 0.25 µm/px), with each stage's peak RSS.
#   bench/run_cells_bench.sh [BUILD_DIR=build] [SIZE=32000] [SLIDE=generated]
set -euo pipefail
build=${1:-build}; size=${2:-32000}; slide=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
ss="$root/$build/stages/slidestream"
work=$(mktemp -d /tmp/ss-cells-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -z "$slide" ]; then
  slide="$work/slide.tiff"
  "$ss" synth slide --out "$slide" --width "$size" --height "$size" --mpp 0.25 --seed 1 --quiet
fi
"$ss" run "$root/pipelines/cells.conf" rundir="$work/run" slide="$slide" --quiet > /dev/null
/usr/bin/python3 - "$work/run" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1] + "/report.json"))
st = {s["name"]: s for s in rep["stages"]}
wall = max(s["wall_s"] for s in rep["stages"])
tiles, cells = st["tiler"]["out"], st["count"]["in"]
print("slide to cells (tiler + 2 cell-croppers + collector, 512 px tiles at 0.25 um/px):")
print("  %d tiles, %d cells in %.1f s: %.1f tiles/s, %.1f cells/s" % (tiles, cells, wall, tiles / wall, cells / wall))
PY
