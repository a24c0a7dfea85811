#!/bin/sh
# cells acceptance — runs `slidestream detect` as a user would and scores it with cells_eval.
#   acceptance.sh bccd|chula|synth|cli CELLS_EVAL
# bccd:  white cells in the BCCD photos (mpp 0.075 µm/px, estimated from the boxes: median red
#        cell box 103 px ≈ 7.7 µm, WBC box 190 px ≈ 14 µm, platelet 39 px ≈ 2.9 µm); per split.
# chula: every cell (--cells all) in the Chula RBC-12 subset (mpp 0.187 µm/px, from the 20 µm
#        scale bar burnt into image 72: 107 px).
# synth: a generated slide with its truth CSV; nucleated cells, no duplicates across tiles.
# cli:   per-input failures, exit codes, the exact CSV header, GeoJSON/gallery/overlay files.
# Exit 77 (skip) when the real data is absent.
set -u
case_=$1
EVAL=$2
: "${SLIDESTREAM:?SLIDESTREAM not set}"
DATA=${SS_SHARED_DATA:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ss_cells_${case_}_XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Under the sanitizer build (ss_add_test sets ASAN_OPTIONS) the point is memory checking, and
# ASan is ~10x slower: the real-data cases then run on a linked subset (BCCD's val split, every
# fourth Chula image), scored with the same thresholds.
SUBSET=0
[ -n "${ASAN_OPTIONS:-}" ] && SUBSET=1

case $case_ in
bccd)
    D=$DATA/smear-bccd-voc
    if [ ! -d "$D/BCCD/JPEGImages" ]; then
        echo "skip: $D absent (real BCCD smear photos)"; exit 77
    fi
    if [ $SUBSET -eq 1 ]; then
        S=$WORK/bccd
        mkdir -p "$S/BCCD/JPEGImages" "$S/BCCD/Annotations" "$S/BCCD/ImageSets/Main"
        cp "$D/BCCD/ImageSets/Main/val.txt" "$S/BCCD/ImageSets/Main/"
        while read -r id; do
            ln -s "$D/BCCD/JPEGImages/$id.jpg" "$S/BCCD/JPEGImages/$id.jpg"
            ln -s "$D/BCCD/Annotations/$id.xml" "$S/BCCD/Annotations/$id.xml"
        done < "$D/BCCD/ImageSets/Main/val.txt"
        echo "sanitizer build: val split only"
        D=$S
    fi
    echo "+ slidestream detect --quiet --mpp 0.075 --out cells.csv $D/BCCD/JPEGImages/*.jpg"
    "$SLIDESTREAM" detect --quiet --mpp 0.075 --out "$WORK/cells.csv" "$D"/BCCD/JPEGImages/*.jpg || exit 1
    exec "$EVAL" bccd "$D" 0.075 --csv "$WORK/cells.csv" --recall 0.90 --precision 0.85
    ;;
chula)
    D=$DATA/smear-chula-rbc12-subset
    if [ ! -d "$D/Dataset" ]; then
        echo "skip: $D absent (real Chula RBC-12 smear photos)"; exit 77
    fi
    if [ $SUBSET -eq 1 ]; then
        S=$WORK/chula
        mkdir -p "$S/Dataset" "$S/Label"
        i=0
        for f in "$D"/Dataset/*; do
            i=$((i + 1))
            [ $((i % 4)) -eq 0 ] || continue
            b=$(basename "$f"); n=${b%.*}
            ln -s "$f" "$S/Dataset/$b"
            [ -f "$D/Label/$n.txt" ] && ln -s "$D/Label/$n.txt" "$S/Label/$n.txt"
        done
        echo "sanitizer build: every fourth image"
        D=$S
    fi
    echo "+ slidestream detect --quiet --cells all --details --mpp 0.187 --out cells.csv $D/Dataset/*.jpg"
    "$SLIDESTREAM" detect --quiet --cells all --details --mpp 0.187 --out "$WORK/cells.csv" \
        "$D"/Dataset/*.jpg || exit 1
    exec "$EVAL" chula "$D" 0.187 --csv "$WORK/cells.csv" --recall 0.90 --precision 0.80 --min-labels 60
    ;;
synth)
    # 4096² px at 0.25 µm/px with a dense population, tiled by 512 px tiles so that many cells
    # lie in tile overlaps.
    echo "+ slidestream synth slide --width 4096 --height 4096 --density 600 --witness-rate 0.5 --seed 7"
    "$SLIDESTREAM" synth slide --quiet --out "$WORK/s.tiff" --truth "$WORK/truth.csv" \
        --width 4096 --height 4096 --density 600 --witness-rate 0.5 --seed 7 || exit 1
    echo "+ slidestream detect --quiet --tile 512 --out cells.csv s.tiff"
    "$SLIDESTREAM" detect --quiet --tile 512 --out "$WORK/cells.csv" "$WORK/s.tiff" || exit 1
    "$EVAL" synth "$WORK/truth.csv" "$WORK/cells.csv" --recall 0.95 --precision 0.95 || exit 1
    # A 0.125 µm/px slide detected at 0.25 µm/px: every tile pixel spans 2×2 level-0 pixels, so
    # ownership and coordinates go through the scaled mapping.
    echo "+ slidestream synth slide --width 6000 --height 5000 --mpp 0.125 --density 500 --seed 8"
    "$SLIDESTREAM" synth slide --quiet --out "$WORK/s2.tiff" --truth "$WORK/truth2.csv" \
        --width 6000 --height 5000 --mpp 0.125 --density 500 --seed 8 || exit 1
    echo "+ slidestream detect --quiet --tile 384 --target-mpp 0.25 --out cells2.csv s2.tiff"
    "$SLIDESTREAM" detect --quiet --tile 384 --target-mpp 0.25 --out "$WORK/cells2.csv" \
        "$WORK/s2.tiff" || exit 1
    exec "$EVAL" synth "$WORK/truth2.csv" "$WORK/cells2.csv" --recall 0.95 --precision 0.95
    ;;
cli)
    fail=0
    "$SLIDESTREAM" detect --help >/dev/null || { echo "FAIL: --help"; fail=1; }
    "$SLIDESTREAM" detect --out "$WORK/x.csv" 2>/dev/null
    [ $? -eq 2 ] || { echo "FAIL: no input must be a usage error (2)"; fail=1; }
    "$SLIDESTREAM" detect --cells some --out "$WORK/x.csv" a.png 2>/dev/null
    [ $? -eq 2 ] || { echo "FAIL: bad --cells must be a usage error (2)"; fail=1; }
    "$SLIDESTREAM" synth slide --quiet --out "$WORK/s.tiff" --truth "$WORK/t.csv" --width 1024 \
        --height 1024 --density 400 --seed 3 || { echo "FAIL: synth"; exit 1; }
    printf 'garbage' > "$WORK/broken.tiff"
    "$SLIDESTREAM" detect --quiet --out "$WORK/cells.csv" --geojson "$WORK/cells.geojson" \
        --gallery "$WORK/gallery.png" --overlay "$WORK/overlay.png" \
        "$WORK/missing.png" "$WORK/s.tiff" "$WORK/broken.tiff" 2>"$WORK/err.txt"
    rc=$?
    cat "$WORK/err.txt"
    [ $rc -ne 0 ] || { echo "FAIL: failed inputs must make the exit status non-zero"; fail=1; }
    grep -q "missing.png" "$WORK/err.txt" || { echo "FAIL: stderr does not name missing.png"; fail=1; }
    grep -q "broken.tiff" "$WORK/err.txt" || { echo "FAIL: stderr does not name broken.tiff"; fail=1; }
    head -1 "$WORK/cells.csv" | grep -qx 'source,cell_id,x,y,bbox_x,bbox_y,bbox_w,bbox_h,area' ||
        { echo "FAIL: CSV header"; fail=1; }
    rows=$(grep -c "s.tiff," "$WORK/cells.csv")
    [ "$rows" -gt 0 ] || { echo "FAIL: the good input's cells are missing"; fail=1; }
    echo "cells from the good input: $rows"
    for f in cells.geojson gallery.png overlay-s.png; do
        [ -s "$WORK/$f" ] || { echo "FAIL: $f not written"; fail=1; }
    done
    if [ -x "${SS_PYTHON:-}" ]; then
        "$SS_PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['features'])==int(sys.argv[2])" \
            "$WORK/cells.geojson" "$rows" || { echo "FAIL: GeoJSON feature count"; fail=1; }
    fi
    # A plain image without a stored mpp and no --mpp is refused, naming the file.
    "$SLIDESTREAM" detect --quiet --out "$WORK/y.csv" "$WORK/gallery.png" 2>"$WORK/err2.txt"
    [ $? -ne 0 ] && grep -q "gallery.png" "$WORK/err2.txt" ||
        { echo "FAIL: an image without mpp must be refused by name"; cat "$WORK/err2.txt"; fail=1; }
    [ $fail -eq 0 ] && echo "cli: ok"
    exit $fail
    ;;
*)
    echo "usage: acceptance.sh bccd|chula|synth|cli CELLS_EVAL"; exit 2 ;;
esac
