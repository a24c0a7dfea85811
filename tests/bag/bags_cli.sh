#!/bin/sh
# `slidestream bags simulate` tests; $1 names the case. The cell folders come from
# `slidestream synth cells` (tiny 16-px crops: only names and classes matter here).
# Exit status is the verdict.
set -u
: "${SLIDESTREAM:?SLIDESTREAM must name the slidestream binary}"
T=$(mktemp -d /tmp/ss-bag-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cells() { # cells PER_CLASS: LYT + 4 abnormal classes in $T/cells
    "$SLIDESTREAM" synth cells --out "$T/cells" --per-class "$1" --size 16 --seed 2 --quiet ||
        fail "synth cells"
}

# check_bags OUTDIR K: every positive bag has exactly K witnesses, negatives none; both CSVs
# agree; witness = non-LYT class; no cell appears twice anywhere.
check_bags() {
    awk -F, -v k="$2" '
        FNR == 1 { next }
        FILENAME ~ /bags.csv$/ {
            nb++; want[$1] = ($2 == 1 ? k : 0); size[$1] = $4
            if ($5 != want[$1]) { print "bags.csv " $1 ": n_witness " $5 ", want " want[$1]; bad = 1 }
            if (($2 == 1) != ($1 ~ /^abnormal/)) { print "label/name mismatch " $1; bad = 1 }
            next }
        {
            seen[$1]++; w[$1] += $5
            if (($5 == 1) != ($4 != "LYT")) { print "instance label wrong: " $0; bad = 1 }
            if (index($3, $2) == 0) { print "path does not hold cell_id: " $0; bad = 1 }
            if (used[$2]++) { print "cell used twice: " $2; bad = 1 }
        }
        END {
            for (b in want) {
                if (seen[b] != size[b]) { print b ": " seen[b] " rows, n_cells " size[b]; bad = 1 }
                if (w[b] != want[b]) { print b ": " w[b] " witnesses, want " want[b]; bad = 1 }
            }
            if (nb == 0) { print "no bags"; bad = 1 }
            exit bad
        }' "$1/bags.csv" "$1/bag_cells.csv" >&2
}

case "$1" in
witness_counts)
    cells 1300
    # (rate, bag size, expected round(rate*size)): sizes chosen so rounding matters (x.5 rounds up)
    for spec in 0.10:25:3 0.10:24:2 0.05:30:2 0.05:50:3 0.01:150:2 0.01:140:1 0.005:100:1 \
                0.005:300:2 0.005:299:1; do
        wr=${spec%%:*}; rest=${spec#*:}; b=${rest%%:*}; k=${rest#*:}
        "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/o" --bags 2 --test-bags 2 \
            --bag-size "$b" --witness-rate "$wr" --seed 1 --quiet || fail "wr $wr B $b"
        check_bags "$T/o" "$k" || fail "wr $wr B $b: expected $k witnesses per positive bag"
        [ "$(grep -c ',1,' "$T/o/bags.csv")" -eq 2 ] || fail "wr $wr: expected 2 positive bags"
        [ "$(grep -c ',0,' "$T/o/bags.csv")" -eq 2 ] || fail "wr $wr: expected 2 negative bags"
        rm -rf "$T/o"
    done
    # a configurable normal set: LYT,NGS normal, so NGS cells never count as witnesses
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/n" --bags 2 --bag-size 40 \
        --witness-rate 0.25 --normal LYT,NGS --quiet || fail "--normal LYT,NGS"
    awk -F, 'NR > 1 && (($4 == "LYT" || $4 == "NGS") != ($5 == 0)) { bad = 1 } END { exit bad }' \
        "$T/n/bag_cells.csv" || fail "--normal LYT,NGS: instance labels"
    [ "$(awk -F, 'NR > 1 && $5 == 1' "$T/n/bag_cells.csv" | wc -l)" -eq 10 ] ||
        fail "--normal LYT,NGS: expected 10 witnesses"
    ;;
disjoint)
    cells 400
    # uses most of the normal pool: train and test must still not share a cell
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/o" --bags 6 --test-bags 4 \
        --bag-size 40 --witness-rate 0.1 --seed 7 --quiet || fail "simulate"
    check_bags "$T/o" 4 || fail "bag contents"
    awk -F, 'NR > 1 { split_of[$1] = $3 } END { for (b in split_of) n[split_of[b]]++;
             exit !(n["train"] == 6 && n["test"] == 4) }' "$T/o/bags.csv" || fail "split counts"
    awk -F, 'NR > 1 { print $1 }' "$T/o/bags.csv" | sort | uniq -d | grep -q . && fail "duplicate bag id"
    grep -q '^abnormal_test_000,1,test,' "$T/o/bags.csv" || fail "test bag naming"
    awk -F, 'NR > 1 && $1 ~ /_test_/ { print $2 }' "$T/o/bag_cells.csv" | sort >"$T/test"
    awk -F, 'NR > 1 && $1 !~ /_test_/ { print $2 }' "$T/o/bag_cells.csv" | sort >"$T/train"
    [ "$(wc -l <"$T/test")" -eq 160 ] && [ "$(wc -l <"$T/train")" -eq 240 ] || fail "row counts"
    [ -z "$(comm -12 "$T/train" "$T/test")" ] || fail "train and test share cells"
    # --link: the same bags as folders of links (reference layout); paths are absolute
    (cd "$T" && "$SLIDESTREAM" bags simulate --cells cells --out "$T/l" --bags 6 --test-bags 4 \
        --bag-size 40 --witness-rate 0.1 --seed 7 --link --quiet) || fail "simulate --link"
    cmp -s "$T/o/bag_cells.csv" "$T/l/bag_cells.csv" || fail "--link or a relative --cells changed the bags"
    [ "$(ls "$T/l/test/abnormal_test_001" | wc -l)" -eq 40 ] || fail "--link: bag folder size"
    [ "$(ls "$T/l/test/abnormal_test_001" | grep -v -c '^LYT')" -eq 4 ] || fail "--link: witnesses"
    [ -r "$T/l/train/normal_002/$(ls "$T/l/train/normal_002" | head -n1)" ] || fail "--link: dangling"
    ;;
deterministic)
    cells 200
    A="--cells $T/cells --bags 4 --test-bags 2 --bag-size 30 --witness-rate 0.1 --quiet"
    "$SLIDESTREAM" bags simulate $A --seed 11 --out "$T/a" || fail "a"
    "$SLIDESTREAM" bags simulate $A --seed 11 --out "$T/b" || fail "b"
    "$SLIDESTREAM" bags simulate $A --seed 12 --out "$T/c" || fail "c"
    cmp -s "$T/a/bag_cells.csv" "$T/b/bag_cells.csv" || fail "same seed, different bags"
    cmp -s "$T/a/bags.csv" "$T/b/bags.csv" || fail "same seed, different manifest"
    cmp -s "$T/a/bag_cells.csv" "$T/c/bag_cells.csv" && fail "different seed, same bags"
    check_bags "$T/c" 3 || fail "seed 12 bags"
    ;;
not_enough)
    cells 100
    # 2 train + 2 test bags of 60 at 10%: normal cells needed 2*60 + 2*54 = 228 > 100 LYT
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/o" --bags 2 --test-bags 2 \
        --bag-size 60 --witness-rate 0.1 2>"$T/err"
    rc=$?
    [ "$rc" -ne 0 ] || fail "not enough cells accepted"
    grep -q "need 228" "$T/err" && grep -q "have 100" "$T/err" ||
        fail "message should say needed and available: $(cat "$T/err")"
    [ ! -e "$T/o/bags.csv" ] || fail "manifest written despite the error"
    # abnormal pool short: only BLA is abnormal (2 cells); a positive bag of 4 at WR 1 needs 4
    rm -rf "$T/cells"; cells 2
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/o" --bags 2 --bag-size 4 \
        --witness-rate 1 --normal LYT,NGS,EOS,MON 2>"$T/err" && fail "short abnormal pool accepted"
    grep -q "abnormal cells: need 4" "$T/err" && grep -q "have 2" "$T/err" ||
        fail "abnormal message: $(cat "$T/err")"
    # a normal code without a folder
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/o" --bags 2 --bag-size 1 \
        --witness-rate 1 --normal XYZ 2>"$T/err" && fail "missing normal folder accepted"
    grep -q "XYZ" "$T/err" || fail "missing folder message: $(cat "$T/err")"
    ;;
by_source)
    cells 400
    # a cells.csv naming 40 source images (cell i of the sorted list from image i mod 40)
    (cd "$T/cells" && ls -1 */*.png | sort | awk 'BEGIN { print "path,class,source,x,y" }
        { split($0, a, "/"); printf "%s,%s,img%02d,8,8\n", $0, a[1], (NR - 1) % 40 }') \
        >"$T/cells/cells.csv"
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/o" --bags 4 --test-bags 4 \
        --bag-size 40 --witness-rate 0.1 --seed 3 --by-source --quiet || fail "--by-source"
    check_bags "$T/o" 4 || fail "--by-source: bag contents"
    awk -F, 'FILENAME ~ /cells.csv$/ { if (FNR > 1) src[$1] = $3; next }
        FNR > 1 { s = src[$2]; if ($1 ~ /_test_/) te[s] = 1; else tr[s] = 1 }
        END { for (s in te) if (s in tr) { print "source " s " in train and test"; bad = 1 }
              exit bad }' "$T/cells/cells.csv" "$T/o/bag_cells.csv" >&2 ||
        fail "--by-source: train and test share a source image"
    # without sources for every cell it is refused, naming the cells.csv it needs
    head -n 100 "$T/cells/cells.csv" >"$T/c" && mv "$T/c" "$T/cells/cells.csv"
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/p" --bags 4 --test-bags 4 \
        --bag-size 40 --witness-rate 0.1 --by-source 2>"$T/err" && fail "unsourced cells accepted"
    grep -q "cells.csv" "$T/err" || fail "--by-source message: $(cat "$T/err")"
    # too few images left for training once the test images are set aside: says what is short
    (cd "$T/cells" && ls -1 */*.png | sort | awk 'BEGIN { print "path,class,source,x,y" }
        { split($0, a, "/"); printf "%s,%s,img%02d,8,8\n", $0, a[1], (NR - 1) % 3 }') \
        >"$T/cells/cells.csv"
    "$SLIDESTREAM" bags simulate --cells "$T/cells" --out "$T/q" --bags 4 --test-bags 4 \
        --bag-size 40 --witness-rate 0.1 --by-source 2>"$T/err" && fail "short split accepted"
    grep -q "short by" "$T/err" || fail "short split message: $(cat "$T/err")"
    ;;
bad_flags)
    cells 5
    C="simulate --cells $T/cells --out $T/o"
    for args in "--bags 3 --bag-size 2 --witness-rate 0.5:--bags" \
                "--bags x --bag-size 2 --witness-rate 0.5:--bags" \
                "--bags 2 --bag-size 0 --witness-rate 0.5:--bag-size" \
                "--bags 2 --bag-size 2 --witness-rate 0:--witness-rate" \
                "--bags 2 --bag-size 2 --witness-rate 1.5:--witness-rate" \
                "--bags 2 --bag-size 2:--witness-rate" \
                "--bags 2 --bag-size 2 --witness-rate 0.5 --seed -3:--seed" \
                "--bags 2 --bag-size 2 --witness-rate 0.5 --test-bags 1:--test-bags" \
                "--bags 2 --bag-size 2 --witness-rate 0.5 --frob 1:--frob"; do
        a=${args%:*}; want=${args##*:}
        "$SLIDESTREAM" bags $C $a >/dev/null 2>"$T/err"
        rc=$?
        [ "$rc" -eq 2 ] || fail "bags $a: exit $rc, expected 2"
        grep -q -- "$want" "$T/err" || fail "bags $a: message should name $want: $(cat "$T/err")"
    done
    "$SLIDESTREAM" bags simulate --help | grep -q -- "--witness-rate" || fail "--help"
    "$SLIDESTREAM" bags --help | grep -q simulate || fail "bags --help"
    "$SLIDESTREAM" bags nonsense 2>/dev/null; [ $? -eq 2 ] || fail "unknown mode"
    ;;
*)
    fail "unknown case $1"
    ;;
esac
exit 0
