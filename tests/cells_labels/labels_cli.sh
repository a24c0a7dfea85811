#!/bin/bash
# `slidestream cells from-labels` on real annotated photos and on bad input; $1 names the case,
# $2 is the labels_check program (it checks every crop against its source image pixel by pixel).
#   chula   point labels: 3 subset images + 3 of -more (707.jpg and 709.jpg are PNG files) as two
#           --images/--labels pairs; counts per class and at the border against the label files,
#           pad and skip; the folder read by `bags simulate`
#   bccd    Pascal VOC boxes: 3 images; every box's centre (1-based VOC -> 0-based), the empty box
#           of BloodImage_00338 named and counted
#   csv     a hand-made CSV over Chula images (a PNG named .jpg, a subfolder, a quoted name with a
#           comma, a bad row, a missing image); the folder embedded by `slidestream embed`
#   errors  bad input refused with an error naming it, or named and counted while the run goes on
#           (generated images: needs no shared data)
# Cases needing ../shared/data exit 77 (skip) when it is absent. Exit status is the verdict.
set -u
: "${SLIDESTREAM:?SLIDESTREAM must name the slidestream binary}"
CASE=$1
CHECK=$2
. "$SS_SOURCE_DIR/tests/cli.sh"
T=$(mktemp -d /tmp/ss-labels-XXXXXX)
trap 'rm -rf "$T"' EXIT
DATA=${SS_SHARED_DATA:-}

need() { # need DIR: skip visibly when the shared data set is absent
    [ -d "$DATA/$1" ] || { echo "SKIP: $DATA/$1 is absent (../shared/data not available)"; exit 77; }
}

# summary FILE KEY: the number before KEY in the summary lines
summary() { grep -oE "[0-9]+ $2" "$1" | head -1 | cut -d' ' -f1; }

# expect_chula LABEL_FILES... : "class C N" lines and "border B" over 640x480 images, crop 64
expect_chula() {
    awk '{ n[$3]++; t++; x = int($1 + 0.5); y = int($2 + 0.5)
           if (x - 32 < 0 || y - 32 < 0 || x + 32 > 640 || y + 32 > 480) b++ }
         END { for (c in n) print "class " c " " n[c]; print "total " t; print "border " b + 0 }' "$@"
}

case_chula() {
    need smear-chula-rbc12-subset
    need smear-chula-rbc12-more
    local s=$DATA/smear-chula-rbc12-subset m=$DATA/smear-chula-rbc12-more
    for n in 707 709; do
        head -c 4 "$m/Dataset/$n.jpg" | grep -q PNG || fail "$n.jpg is no longer a PNG: the case lost its point"
    done
    mkdir -p "$T/a/Dataset" "$T/a/Label" "$T/b/Dataset" "$T/b/Label"
    for n in 2 72 10; do
        cp "$s/Dataset/$n.jpg" "$T/a/Dataset/" && cp "$s/Label/$n.txt" "$T/a/Label/" || fail "copy $n"
    done
    for n in 707 709 1; do
        cp "$m/Dataset/$n.jpg" "$T/b/Dataset/" && cp "$m/Label/$n.txt" "$T/b/Label/" || fail "copy $n"
    done
    expect_chula "$T"/a/Label/*.txt "$T"/b/Label/*.txt | sort > "$T/want"
    local total border
    total=$(awk '$1 == "total" { print $2 }' "$T/want")
    border=$(awk '$1 == "border" { print $2 }' "$T/want")
    echo "label files: $total cells, $border within 32 px of the border"

    # pad: every labelled cell, 12 um at 0.187 um/px = 64 px
    "$SLIDESTREAM" cells from-labels --format points --images "$T/a/Dataset" --labels "$T/a/Label" \
        --images "$T/b/Dataset" --labels "$T/b/Label" --out "$T/pad" --size-um 12 --mpp 0.187 \
        --quiet > "$T/pad.out" 2> "$T/pad.err" || { cat "$T/pad.err"; fail "pad run failed"; }
    cat "$T/pad.out"
    grep -q "64x64 px = 12 um at 0.187 um/px" "$T/pad.out" || fail "crop size not 64 px"
    [ "$(summary "$T/pad.out" cells)" = "$total" ] || fail "pad: cells written != $total"
    [ "$(summary "$T/pad.out" padded)" = "$border" ] || fail "pad: padded != $border"
    [ "$(summary "$T/pad.out" images)" = 6 ] || fail "pad: not 6 images"
    "$CHECK" "$T/pad" 64 > "$T/got" || fail "labels_check on the padded folder"
    sed 's/ padded [0-9]*//' "$T/got" | sort > "$T/got.classes"
    grep -v '^border' "$T/want" | diff - "$T/got.classes" || fail "pad: per-class counts differ from the label files"
    grep -q "^total $total padded $border\$" "$T/got" || fail "pad: cells.csv padded column"
    # independently of our decoder: each crop's centre pixel is the source pixel as PIL decodes it
    # (JPEG decoders may round differently: 2 levels allowed there, none for PNG files)
    local py=${SS_PYTHON:-}
    if [ -n "$py" ] && [ -x "$py" ] && "$py" -c "import PIL, numpy" 2> /dev/null; then
        "$py" - "$T/pad" <<'EOF' || fail "crop centres differ from the source pixels (PIL)"
import csv, sys, numpy as np
from PIL import Image
out, cache, worst = sys.argv[1], {}, 0
rows = list(csv.DictReader(open(out + "/cells.csv")))
for r in rows:
    if r["image"] not in cache:
        im = Image.open(r["image"])
        cache[r["image"]] = (np.asarray(im.convert("RGB")).astype(int), im.format)
    src, fmt = cache[r["image"]]
    crop = np.asarray(Image.open(out + "/" + r["path"]).convert("RGB")).astype(int)
    x, y = int(float(r["x"]) + 0.5), int(float(r["y"]) + 0.5)
    d = int(np.abs(crop[32, 32] - src[y, x]).max())
    if d > (2 if fmt == "JPEG" else 0):
        sys.exit("%s: centre differs by %d from %s at (%d, %d)" % (r["path"], d, r["image"], x, y))
    worst = max(worst, d)
pngs = sum(f == "PNG" for _, f in cache.values())
print("ok: %d crop centres match PIL's pixels (largest difference %d; %d of the sources are PNG files)" % (len(rows), worst, pngs))
EOF
    else
        echo "note: no Python with PIL and numpy (SS_PYTHON); centres checked by labels_check only"
    fi
    for n in 707 709; do
        [ "$(grep -c ",$n,/" "$T/pad/cells.csv")" = "$(grep -c . "$T/b/Label/$n.txt")" ] ||
            fail "$n.jpg (a PNG) not cropped in full"
    done

    # skip: the border cells left out, and counted
    "$SLIDESTREAM" cells from-labels --format points --images "$T/a/Dataset" --labels "$T/a/Label" \
        --images "$T/b/Dataset" --labels "$T/b/Label" --out "$T/skip" --size 64 --border skip \
        --quiet > "$T/skip.out" 2>&1 || { cat "$T/skip.out"; fail "skip run failed"; }
    [ "$(summary "$T/skip.out" cells)" = $((total - border)) ] || fail "skip: cells written"
    [ "$(summary "$T/skip.out" skipped)" = "$border" ] || fail "skip: skipped != $border"
    "$CHECK" "$T/skip" 64 | grep -q "^total $((total - border)) padded 0\$" ||
        fail "skip: labels_check"
    echo "ok: pad $total cells ($border padded), skip $((total - border)) cells ($border skipped)"

    # the folder is a cell folder: bags simulate reads it (class 0 = normal)
    "$SLIDESTREAM" bags simulate --cells "$T/pad" --out "$T/bags" --normal 0 --bags 2 \
        --bag-size 8 --witness-rate 0.25 --quiet || fail "bags simulate on the crops"
    [ "$(tail -n +2 "$T/bags/bag_cells.csv" | wc -l)" = 16 ] || fail "bags: not 16 cells"
    echo "ok: bags simulate reads the folder"
}

case_bccd() {
    need smear-bccd-voc
    local b=$DATA/smear-bccd-voc/BCCD
    mkdir -p "$T/img" "$T/ann"
    for n in 00000 00005 00338; do
        cp "$b/JPEGImages/BloodImage_$n.jpg" "$T/img/" && cp "$b/Annotations/BloodImage_$n.xml" "$T/ann/" ||
            fail "copy $n"
    done
    "$SLIDESTREAM" cells from-labels --format voc --images "$T/img" --labels "$T/ann" \
        --out "$T/out" --size 128 --quiet > "$T/run.out" 2> "$T/run.err" ||
        { cat "$T/run.err"; fail "voc run failed"; }
    cat "$T/run.out" "$T/run.err"
    grep -q "BloodImage_00338.xml:[0-9]*: object 'RBC' has an empty box" "$T/run.err" ||
        fail "the empty box of BloodImage_00338 is not named"
    [ "$(summary "$T/run.out" 'malformed labels')" = 1 ] || fail "not 1 malformed label"
    "$CHECK" "$T/out" 128 > "$T/got" || fail "labels_check"
    local objects
    objects=$(cat "$T"/ann/*.xml | grep -c "<object>")
    grep -q "^total $((objects - 1)) " "$T/got" || fail "not $((objects - 1)) crops of $objects objects"
    for c in RBC WBC Platelets; do
        local want
        want=$(cat "$T"/ann/*.xml | grep -c "<name>$c</name>")
        [ "$c" = RBC ] && want=$((want - 1))
        grep -q "^class $c $want\$" "$T/got" || fail "class $c: want $want ($(cat "$T/got"))"
    done
    # every box's centre, independently of our reader (Python's XML parser)
    local py=${SS_PYTHON:-}
    if [ -n "$py" ] && [ -x "$py" ]; then
        "$py" - "$T/ann" "$T/out/cells.csv" <<'EOF' || fail "box centres differ"
import csv, glob, os, sys, xml.etree.ElementTree as ET
want = []
for f in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    for o in ET.parse(f).getroot().findall("object"):
        b = [float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        if b[2] > b[0] and b[3] > b[1]:
            want.append((os.path.basename(f)[:-4], o.find("name").text.strip(),
                         (b[0] + b[2]) / 2 - 1, (b[1] + b[3]) / 2 - 1))
got = [(r["source"], r["class"], float(r["x"]), float(r["y"])) for r in csv.DictReader(open(sys.argv[2]))]
if sorted(want) != sorted(got):
    sys.exit("centres: %d boxes, %d rows; first difference %s" % (len(want), len(got), sorted(set(want) ^ set(got))[:3]))
print("ok: %d box centres match the VOC files (1-based -> 0-based)" % len(want))
EOF
    else
        echo "note: no Python (SS_PYTHON); box centres checked by labels_check only"
    fi
}

case_csv() {
    need smear-chula-rbc12-subset
    need smear-chula-rbc12-more
    local s=$DATA/smear-chula-rbc12-subset m=$DATA/smear-chula-rbc12-more
    mkdir -p "$T/im/sub"
    cp "$m/Dataset/707.jpg" "$T/im/" && cp "$s/Dataset/72.jpg" "$T/im/sub/" &&
        cp "$s/Dataset/2.jpg" "$T/im/my, image.jpg" || fail copy
    {
        echo "x,y,class,image,note"
        head -5 "$m/Label/707.txt" | awk '{ print $1 "," $2 "," $3 ",707.jpg," }'
        head -4 "$s/Label/72.txt" | awk '{ print $1 "," $2 "," $3 ",sub/72.jpg,in a folder" }'
        head -3 "$s/Label/2.txt" | awk '{ print $1 "," $2 "," $3 ",\"my, image.jpg\"," }'
        echo "abc,10,0,707.jpg,malformed"
        echo "5,5,0,nope.jpg,no such image"
    } > "$T/im/labels.csv"
    # no --images: image paths are relative to the CSV's folder
    "$SLIDESTREAM" cells from-labels --format csv --labels "$T/im/labels.csv" --out "$T/out" \
        --size 48 --quiet > "$T/run.out" 2> "$T/run.err" || { cat "$T/run.err"; fail "csv run failed"; }
    cat "$T/run.out" "$T/run.err"
    [ "$(summary "$T/run.out" cells)" = 12 ] || fail "not 12 cells"
    [ "$(summary "$T/run.out" 'malformed labels')" = 1 ] || fail "not 1 malformed label"
    [ "$(summary "$T/run.out" 'label files without an image')" = 1 ] || fail "missing image not counted"
    grep -q "labels.csv:14: x and y must be numbers" "$T/run.err" || fail "the bad row is not named"
    grep -q "nope.jpg" "$T/run.err" || fail "the missing image is not named"
    "$CHECK" "$T/out" 48 > "$T/got" || fail "labels_check"
    grep -q '^total 12 ' "$T/got" || fail "labels_check total"
    tail -n +2 "$T/out/cells.csv" | cut -d, -f3 | sort | uniq -c | awk '{ print $2 ":" $1 }' | tr '\n' ' ' > "$T/src"
    grep -q "707:5 " "$T/src" && grep -q "sub-72:4 " "$T/src" && grep -q "my__image:3 " "$T/src" ||
        fail "sources per image: $(cat "$T/src")"
    echo "ok: 12 crops; sources $(cat "$T/src")"
    # the folder is a cell folder: embed reads every crop
    "$SLIDESTREAM" checkpoint init --out "$T/ck.h5" --width 0.25 --input 32 > /dev/null ||
        fail "checkpoint init"
    "$SLIDESTREAM" embed --checkpoint "$T/ck.h5" --out "$T/e.h5" "$T/out" > "$T/embed.out" 2>&1 ||
        { cat "$T/embed.out"; fail "embed on the crops"; }
    grep -q "12" "$T/embed.out" || fail "embed did not see 12 crops: $(cat "$T/embed.out")"
    echo "ok: embed reads the folder: $(tail -1 "$T/embed.out")"
}

case_errors() {
    # generated images: a 64x48 picture per class folder of `synth cells`
    "$SLIDESTREAM" synth cells --out "$T/syn" --per-class 1 --size 64 --seed 3 --quiet ||
        fail "synth cells"
    mkdir -p "$T/img" "$T/lab"
    local k=0
    for f in $(find "$T/syn" -name '*.png' | sort | head -3); do
        k=$((k + 1))
        cp "$f" "$T/img/c$k.png"
        printf '10 10 0\n32 32 1\n' > "$T/lab/c$k.txt"
    done
    local ok=(--format points --images "$T/img" --labels "$T/lab" --size 16)
    expect "unknown format" "unknown label format 'yolo'" \
        "$SLIDESTREAM" cells from-labels --format yolo --images "$T/img" --labels "$T/lab" --size 16 --out "$T/o1"
    expect "--size-um without --mpp" "--size-um 12 needs --mpp" \
        "$SLIDESTREAM" cells from-labels --format points --images "$T/img" --labels "$T/lab" --size-um 12 --out "$T/o2"
    expect "no crop size" "crop size is required" \
        "$SLIDESTREAM" cells from-labels --format points --images "$T/img" --labels "$T/lab" --out "$T/o3"
    expect "two crop sizes" "give the crop size once" \
        "$SLIDESTREAM" cells from-labels "${ok[@]}" --size-um 3 --mpp 0.1 --out "$T/o4"
    expect "missing labels folder" "cannot open folder $T/nolabels" \
        "$SLIDESTREAM" cells from-labels --format points --images "$T/img" --labels "$T/nolabels" --size 16 --out "$T/o5"
    expect "missing CSV" "cannot read label file $T/none.csv" \
        "$SLIDESTREAM" cells from-labels --format csv --labels "$T/none.csv" --size 16 --out "$T/o6"
    expect "unpaired --labels" "give them in pairs" \
        "$SLIDESTREAM" cells from-labels "${ok[@]}" --labels "$T/lab" --out "$T/o7"
    expect "bad --border" "'zigzag' is neither pad nor skip" \
        "$SLIDESTREAM" cells from-labels "${ok[@]}" --border zigzag --out "$T/o8"
    expect "bad --classes" "'a/b' is not a class name" \
        "$SLIDESTREAM" cells from-labels "${ok[@]}" --classes 0,a/b --out "$T/o9"
    [ ! -e "$T/o1" ] && [ ! -e "$T/o5" ] && [ ! -e "$T/o9" ] || fail "a refused run left an output folder"

    # per-item faults: named, counted, the run goes on
    printf '10 10 0\nten 10 1\n5 5 0 extra\n32 32 1\n' > "$T/lab/c1.txt"
    printf 'garbage' > "$T/img/broken.jpg"
    printf '1 1 0\n' > "$T/lab/broken.txt"
    printf '1 1 0\n' > "$T/lab/lonely.txt"
    cp "$T/img/c2.png" "$T/img/unlabelled.jpg"
    "$SLIDESTREAM" cells from-labels "${ok[@]}" --out "$T/run" --quiet > "$T/run.out" 2> "$T/run.err"
    local rc=$?
    cat "$T/run.out" "$T/run.err"
    [ $rc = 1 ] || fail "an unreadable image must give exit status 1 (got $rc)"
    grep -q "c1.txt:2: x and y must be numbers" "$T/run.err" || fail "malformed line 2 not named"
    grep -q "c1.txt:3: expected 'x y class'" "$T/run.err" || fail "malformed line 3 not named"
    grep -q "broken.jpg" "$T/run.err" || fail "the unreadable image is not named"
    grep -q "lonely.txt: no image" "$T/run.err" || fail "the label file without an image is not named"
    grep -q "unlabelled.jpg: no label file" "$T/run.err" || fail "the image without labels is not named"
    [ "$(summary "$T/run.out" cells)" = 6 ] || fail "the good cells were not all written"
    [ "$(summary "$T/run.out" 'malformed labels')" = 2 ] || fail "malformed count"
    [ "$(summary "$T/run.out" 'unreadable images')" = 1 ] || fail "unreadable count"
    "$CHECK" "$T/run" 16 > /dev/null || fail "labels_check on the run with faults"
    echo "ok: faults named and counted, 6 cells written, exit status 1"
    expect "non-empty output" "is not empty" \
        "$SLIDESTREAM" cells from-labels "${ok[@]}" --out "$T/run"

    # a VOC file that is not well-formed: the file named with its line, the rest goes on
    mkdir -p "$T/voc"
    cp "$T/img/c1.png" "$T/img/c2.png" "$T/voc/"
    printf '<annotation>\n<object><name>A</name>\n</annotation>\n' > "$T/voc/c1.xml"
    printf '<annotation><object><name>A</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>15</xmax><ymax>15</ymax></bndbox></object></annotation>\n' > "$T/voc/c2.xml"
    "$SLIDESTREAM" cells from-labels --format voc --images "$T/voc" --labels "$T/voc" --size 16 \
        --out "$T/vout" --quiet > "$T/voc.out" 2>&1
    rc=$?
    cat "$T/voc.out"
    [ $rc = 1 ] || fail "an unreadable label file must give exit status 1 (got $rc)"
    grep -q "c1.xml is not a readable VOC annotation: .*line 3" "$T/voc.out" ||
        fail "the broken XML is not named with its line"
    [ "$(summary "$T/voc.out" cells)" = 1 ] || fail "the good VOC file was not cropped"
}

case "$CASE" in
chula) case_chula ;;
bccd) case_bccd ;;
csv) case_csv ;;
errors) case_errors ;;
*) fail "unknown case $CASE" ;;
esac
echo "cells_labels.$CASE: passed"
