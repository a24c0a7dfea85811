#!/bin/sh
# `slidestream synth` command-line tests; $1 names the case. Needs $SLIDESTREAM (set by ctest).
# Exit status is the verdict.
set -u
: "${SLIDESTREAM:?SLIDESTREAM must name the slidestream binary}"
T=$(mktemp -d /tmp/ss-synth-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_usage "flag text" args... : exit status 2 and the message names the text
expect_usage() {
    want=$1; shift
    "$SLIDESTREAM" synth "$@" >"$T/out" 2>"$T/err"
    rc=$?
    [ "$rc" -eq 2 ] || fail "synth $*: exit $rc, expected 2 ($(cat "$T/err"))"
    grep -q -- "$want" "$T/err" || fail "synth $*: message does not name '$want': $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "synth $*: message is not one line: $(cat "$T/err")"
}

case "$1" in
help)
    "$SLIDESTREAM" synth --help | grep -q "synth slide" || fail "synth --help"
    "$SLIDESTREAM" synth slide --help | grep -q -- "--witness-rate" || fail "synth slide --help"
    "$SLIDESTREAM" synth cells --help | grep -q -- "--per-class" || fail "synth cells --help"
    for m in cells slide; do # the flag, and its default within the next lines
        "$SLIDESTREAM" synth $m --help | tr -s '\n ' '  ' |
            grep -qE -- "--difficulty D [^-]*\(default [01]\.?[0-9]*" ||
            fail "synth $m --help: --difficulty and its default"
    done
    ;;
bad_flags)
    S="slide --out $T/x.tiff"
    expect_usage "--width" $S --width abc --height 100
    expect_usage "--width" $S --width -5 --height 100
    expect_usage "--height" $S --width 100 --height 12x
    expect_usage "--height" $S --width 100
    expect_usage "--mpp" $S --width 100 --height 100 --mpp 0
    expect_usage "--mpp" $S --width 100 --height 100 --mpp nan
    expect_usage "--witness-rate" $S --width 100 --height 100 --witness-rate 1.5
    expect_usage "--seed" $S --width 100 --height 100 --seed -1
    expect_usage "--seed" $S --width 100 --height 100 --seed
    expect_usage "--bogus" $S --width 100 --height 100 --bogus 3
    expect_usage "--difficulty" $S --width 100 --height 100 --difficulty 1.5
    expect_usage "--difficulty" cells --out "$T/c" --per-class 2 --difficulty -0.1
    expect_usage "--difficulty" cells --out "$T/c" --per-class 2 --difficulty hard
    expect_usage "--out" slide --width 100 --height 100
    expect_usage "--per-class" cells --out "$T/c" --per-class zero
    expect_usage "--size" cells --out "$T/c" --per-class 2 --size 4
    expect_usage "--out" cells --per-class 2
    expect_usage "frobnicate" frobnicate
    [ ! -e "$T/x.tiff" ] || fail "a usage error left an output file"
    # an unwritable output is a failure (not a usage error), with one reason on stderr
    "$SLIDESTREAM" synth slide --out "$T/no/such/dir/x.tiff" --width 64 --height 64 2>"$T/err"
    rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ] || fail "unwritable output: exit $rc"
    grep -q "no/such/dir" "$T/err" || fail "unwritable output: message $(cat "$T/err")"
    ;;
deterministic)
    A="slide --width 1500 --height 1100 --mpp 0.4 --witness-rate 0.3 --quiet"
    "$SLIDESTREAM" synth $A --seed 5 --out "$T/a.tiff" --truth "$T/a.csv" || fail "run a"
    "$SLIDESTREAM" synth $A --seed 5 --out "$T/b.tiff" --truth "$T/b.csv" || fail "run b"
    "$SLIDESTREAM" synth $A --seed 6 --out "$T/c.tiff" --truth "$T/c.csv" || fail "run c"
    cmp -s "$T/a.csv" "$T/b.csv" || fail "same seed, different truth CSV"
    cmp -s "$T/a.tiff" "$T/b.tiff" || fail "same seed, different TIFF bytes"
    ! cmp -s "$T/a.csv" "$T/c.csv" || fail "different seed, same truth CSV"
    ! cmp -s "$T/a.tiff" "$T/c.tiff" || fail "different seed, same TIFF"
    ls "$T"/*.part >/dev/null 2>&1 && fail "temporary files left behind"
    "$SLIDESTREAM" synth cells --out "$T/ca" --per-class 3 --seed 9 --quiet || fail "cells a"
    "$SLIDESTREAM" synth cells --out "$T/cb" --per-class 3 --seed 9 --quiet || fail "cells b"
    "$SLIDESTREAM" synth cells --out "$T/cc" --per-class 3 --seed 10 --quiet || fail "cells c"
    diff -r "$T/ca" "$T/cb" >/dev/null || fail "same seed, different cell images"
    diff -r "$T/ca" "$T/cc" >/dev/null && fail "different seed, same cell images"
    ;;
truth_witness)
    # ~3200 nucleated cells: the abnormal share is binomial around the requested rate
    for wr in 0.05 0.2; do
        "$SLIDESTREAM" synth slide --out "$T/w.tiff" --truth "$T/w.csv" --width 4000 \
            --height 4000 --mpp 1 --witness-rate $wr --seed 3 --quiet || fail "run wr $wr"
        [ "$(head -n1 "$T/w.csv")" = "class,x,y,radius" ] || fail "truth header: $(head -n1 "$T/w.csv")"
        awk -F, -v wr=$wr '
            NR == 1 { next }
            NF != 4 || $2 !~ /^[0-9]+$/ || $3 !~ /^[0-9]+$/ || $2 >= 4000 || $3 >= 4000 || $4 <= 0 {
                print "bad row " NR ": " $0; bad = 1; exit }
            $1 == "RBC" || $1 == "PLT" { other++; next }
            $1 !~ /^(LYT|BLA|NGS|EOS|MON)$/ { print "unknown class " $1; bad = 1; exit }
            { nuc++; if ($1 != "LYT") ab++; seen[$1] = 1 }
            END {
                if (bad) exit 1
                share = ab / nuc; d = share - wr; if (d < 0) d = -d
                printf "wr %s: %d nucleated, %d abnormal (%.4f), %d RBC/PLT\n", wr, nuc, ab, share, other
                if (nuc < 2000 || other < 10 * nuc) { print "too few cells"; exit 1 }
                if (d > 3 * sqrt(wr * (1 - wr) / nuc) + 0.002) { print "share off"; exit 1 }
                if (wr > 0.1 && !(seen["BLA"] && seen["NGS"] && seen["EOS"] && seen["MON"])) {
                    print "an abnormal class is missing"; exit 1 }
            }' "$T/w.csv" >&2 || fail "truth CSV for wr $wr"
    done
    # witness rate 0: only LYT among nucleated cells
    "$SLIDESTREAM" synth slide --out "$T/z.tiff" --truth "$T/z.csv" --width 2000 --height 2000 \
        --mpp 1 --witness-rate 0 --quiet || fail "run wr 0"
    cut -d, -f1 "$T/z.csv" | grep -q -E '^(BLA|NGS|EOS|MON)$' && fail "abnormal cell at wr 0"
    ;;
cells)
    "$SLIDESTREAM" synth cells --out "$T/c" --per-class 7 --quiet || fail "synth cells"
    [ "$(ls "$T/c" | tr '\n' ' ')" = "BLA EOS LYT MON NGS " ] || fail "folders: $(ls "$T/c")"
    for d in BLA EOS LYT MON NGS; do
        n=$(ls "$T/c/$d" | grep -c "^${d}_[0-9][0-9][0-9][0-9][0-9]\.png\$")
        [ "$n" -eq 7 ] || fail "$d: $n files named ${d}_NNNNN.png, expected 7"
    done
    [ -f "$T/c/LYT/LYT_00006.png" ] || fail "LYT_00006.png missing"
    if command -v vipsheader >/dev/null; then
        for f in "$T/c/LYT/LYT_00000.png" "$T/c/MON/MON_00006.png"; do
            [ "$(vipsheader -f width "$f")x$(vipsheader -f height "$f")x$(vipsheader -f bands "$f")" = 96x96x3 ] ||
                fail "$f is not 96x96 RGB"
        done
    fi
    # difficulty changes the abnormal images only; the same difficulty, the same images
    for run in "e 0" "h 0.9" "h2 0.9"; do
        set -- $run
        "$SLIDESTREAM" synth cells --out "$T/$1" --per-class 3 --difficulty $2 --seed 4 --quiet ||
            fail "synth cells --difficulty $2"
    done
    diff -r "$T/h" "$T/h2" >/dev/null || fail "--difficulty 0.9 twice, different images"
    diff -r "$T/e/LYT" "$T/h/LYT" >/dev/null || fail "--difficulty changed the LYT images"
    for d in BLA EOS MON NGS; do
        for i in 0 1 2; do
            cmp -s "$T/e/$d/${d}_0000$i.png" "$T/h/$d/${d}_0000$i.png" &&
                fail "--difficulty 0.9 left $d image $i as at 0"
        done
    done
    rm -rf "$T/e" "$T/h" "$T/h2"
    "$SLIDESTREAM" synth cells --out "$T/d" --per-class 2 --size 224 --quiet || fail "size 224"
    if command -v vipsheader >/dev/null; then
        [ "$(vipsheader -f width "$T/d/EOS/EOS_00001.png")" = 224 ] || fail "--size 224"
    fi
    ;;
*)
    fail "unknown case $1"
    ;;
esac
exit 0
