#!/bin/sh
# Tiler throughput and memory, beside libvips measured in the same run (issue 3 benchmark).
#
#   bench/run_tiler_bench.sh [BUILD_DIR] [WORK_DIR]
#
# BUILD_DIR (default ./build) holds stages/slidestream and bench/tiler_bench. WORK_DIR (default
# /tmp/ss_tiler_bench) keeps the generated slides between runs: a 1-gigapixel (32000x32000) and a
# 2-gigapixel (44800x44800) synthetic smear at 0.25 um/px, JPEG-tiled pyramidal TIFF (256 px
# tiles), written by `slidestream synth slide` (not timed).
#
# Measured, all on the 1-gigapixel slide with 512 px tiles at its native resolution:
#   tiler      every 512x512 tile read as RGB by lib/slide (one thread, then two: libvips uses
#              one worker per core)
#   dzsave     `vips dzsave --tile-size 512 --overlap 0 --depth one --suffix .jpg`: the same tile
#              grid; libvips decodes with OpenSlide too, uses all cores, and also JPEG-encodes and
#              writes every tile (our tiler hands raw pixels to the next stage instead)
# Wall-clock rates depend on what else runs on the machine (a single-threaded reader loses more
# than libvips' thread pool when cores are contended), so CPU seconds per tile are compared too,
# then the tiler in its production setting (20 um overlap, foreground mask) reading every kept tile
# of the 2-gigapixel slide: tiles/s and peak RSS (target < 500 MB). About 2 minutes on 2 idle
# cores, plus the one-off slide generation.
set -eu
BUILD=${1:-build}
WORK=${2:-/tmp/ss_tiler_bench}
SS=$BUILD/stages/slidestream
TB=$BUILD/bench/tiler_bench
for f in "$SS" "$TB"; do
    [ -x "$f" ] || { echo "run_tiler_bench: $f not built" >&2; exit 1; }
done
command -v vips >/dev/null || { echo "run_tiler_bench: vips CLI missing (apt-get install libvips-tools)" >&2; exit 1; }
mkdir -p "$WORK"
S1=$WORK/slide_1gp.tiff
S2=$WORK/slide_2gp.tiff
[ -s "$S1" ] || "$SS" synth slide --out "$S1" --width 32000 --height 32000 --mpp 0.25 --seed 1
[ -s "$S2" ] || "$SS" synth slide --out "$S2" --width 44800 --height 44800 --mpp 0.25 --seed 2

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
echo "== tiler, 512 px tiles, overlap 0, no mask (same grid as dzsave)"
T1=$("$TB" "$S1" --tile 512 --overlap-px 0 --mask 0 --threads 1)
echo "$T1"
T2=$("$TB" "$S1" --tile 512 --overlap-px 0 --mask 0 --threads 2)
echo "$T2"

echo "== vips dzsave, same slide and tile size"
rm -rf "$WORK/dz" "$WORK/dz_files" "$WORK/dz.dzi"
a=$(now)
TIME=/usr/bin/time # GNU time (Debian package `time`) for dzsave's CPU seconds and peak RSS
[ -x "$TIME" ] || { echo "run_tiler_bench: $TIME missing (apt-get install time)" >&2; exit 1; }
"$TIME" -f "peak=%M cpu=%U %S" -o "$WORK/dz.time" \
    vips dzsave "$S1" "$WORK/dz" --tile-size 512 --overlap 0 --depth one --suffix .jpg
b=$(now)
DZ_TILES=$(find "$WORK/dz_files" -type f -name '*.jpg' | wc -l)
DZ_S=$(calc "$b - $a")
DZ_RATE=$(calc "$DZ_TILES / $DZ_S")
DZ_CPU=$(awk '/peak=/ {split($1, a, "="); split($2, b, "="); print b[2] + $3}' "$WORK/dz.time")
DZ_RSS=$(awk '/peak=/ {split($1, a, "="); print a[2] / 1024}' "$WORK/dz.time")
DZ_CRATE=$(calc "$DZ_TILES / $DZ_CPU")
printf 'dzsave tiles=%d seconds=%.3f tiles_per_s=%.1f cpu_s=%.2f tiles_per_cpu_s=%.1f peak_rss_mb=%.1f\n' \
    "$DZ_TILES" "$DZ_S" "$DZ_RATE" "$DZ_CPU" "$DZ_CRATE" "$DZ_RSS"
rm -rf "$WORK/dz_files" "$WORK/dz.dzi"

echo "== tiler, production setting (20 um = 80 px overlap, foreground mask) on the 2-gigapixel slide: peak RSS"
T4=$("$TB" "$S2" --tile 512 --overlap-px 80 --mask 1 --threads 1)
echo "$T4"

rate() { echo "$1" | sed -n 's/.*tiles_per_s=\([0-9.]*\).*/\1/p'; }
crate() { echo "$1" | sed -n 's/.*tiles_per_cpu_s=\([0-9.]*\).*/\1/p'; }
rss() { echo "$1" | sed -n 's/.*peak_rss_mb=\([0-9.]*\).*/\1/p'; }
echo "== summary"
printf 'tiler/dzsave tiles/s ratio (1 thread): %.2f  (target >= 0.8)\n' "$(calc "$(rate "$T1") / $DZ_RATE")"
printf 'tiler/dzsave tiles/s ratio (2 threads, as many as libvips uses here): %.2f\n' "$(calc "$(rate "$T2") / $DZ_RATE")"
printf 'tiler/dzsave tiles per CPU-second ratio (load-independent): %.2f\n' "$(calc "$(crate "$T1") / $DZ_CRATE")"
printf 'tiler peak RSS on 2 gigapixels: %s MB (target < 500)\n' "$(rss "$T4")"
