#!/usr/bin/env bash
# `slidestream study` tests; $1 names the case. Exit status is the verdict.
#   grid      a tiny grid (2 methods x 2 witness rates x 2 seeds) on generated cells whose
#             cells.csv records 60 source images: stopped after 3 runs and run again, it finishes
#             without redoing them; every bag has the planned witnesses, no cell is used twice,
#             train and test come from disjoint source images, each run tested exactly the test
#             bags, and every table cell is the mean ± sample std of the runs it names
#   refusals  a grid the folder cannot fill is refused before anything trains (naming what is
#             short and by how much); other settings in an existing study folder are refused
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
. "$src/tests/cli.sh" # fail
T=$(mktemp -d /tmp/ss-study.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

cells() { # generated cells (LYT normal, four abnormal classes) and a cells.csv of 60 sources
    "$ss" synth cells --out "$T/cells" --per-class "$1" --size 48 --seed 5 --quiet || fail "synth cells"
    (cd "$T/cells" && ls -1 */*.png | sort | awk 'BEGIN { print "path,class,source,x,y" }
        { split($0, a, "/"); printf "%s,%s,image%02d,24,24\n", $0, a[1], (NR * 7) % 60 }') \
        >"$T/cells/cells.csv"
}

GRID=(--cells "$T/cells" --normal LYT --out "$T/s" --methods supervised,slam-ags --rates 20%,10%
      --seeds 2 --bag-size 20 --train-bags 6 --test-bags 4 --epochs 2 --warmup 0 --batch 32
      --size 32 --width 0.125 --mil-epochs 8 --top-k 4 --threads 1)

case "$1" in
grid)
    "$py" -c "import numpy" 2>/dev/null || { echo "SKIP: $py has no numpy"; exit 77; }
    cells 240
    "$ss" study "${GRID[@]}" --max-runs 3 >"$T/log1" 2>&1 || { cat "$T/log1"; fail "first session"; }
    grep -q "stopped after 3 of 8 runs" "$T/log1" || { cat "$T/log1"; fail "no stop message after 3 runs"; }
    [ "$(ls "$T"/s/wr-*/seed-*/*/result.csv | wc -l)" -eq 3 ] || fail "want 3 finished runs"
    for f in "$T"/s/wr-*/seed-*/*/result.csv; do
        echo "$f $(stat -c %Y.%s "$f") $(md5sum <"$f" | cut -d' ' -f1)"
    done >"$T/finished"
    grep -q "ETA" "$T/log1" || fail "no ETA in the progress lines"
    sleep 1
    "$ss" study "${GRID[@]}" >"$T/log2" 2>&1 || { cat "$T/log2"; fail "second session"; }
    grep -q "8 runs (2 methods x 2 witness rates x 2 seeds), 3 already finished" "$T/log2" ||
        { cat "$T/log2"; fail "the second session should find 3 runs finished"; }
    while read -r f stamp sum; do
        [ "$(stat -c %Y.%s "$f") $(md5sum <"$f" | cut -d' ' -f1)" = "$stamp $sum" ] || fail "$f was redone"
    done <"$T/finished"
    [ "$(ls "$T"/s/wr-*/seed-*/*/result.csv | wc -l)" -eq 8 ] || fail "want 8 finished runs"
    for f in results.csv table-f1.csv table-f1.md table-recall.csv table-recall.md figure-1.svg report.md; do
        [ -s "$T/s/$f" ] || fail "no $f"
    done
    "$py" - "$T" <<'PY' || fail "grid checks"
import csv, glob, math, os, re, sys
T = sys.argv[1]; S = T + "/s"
src = {r["path"]: r["source"] for r in csv.DictReader(open(T + "/cells/cells.csv"))}
B, K = 20, 4
for group in sorted(glob.glob(S + "/wr-*/seed-*")):
    wr = float(re.search(r"wr-([0-9.]+)", group).group(1))
    want = math.floor(wr * B + 0.5 + 1e-9)
    bags = {r["bag_id"]: r for r in csv.DictReader(open(group + "/bags/bags.csv"))}
    rows = list(csv.DictReader(open(group + "/bags/bag_cells.csv")))
    assert len(bags) == 10, (group, len(bags))
    seen, wit, n = set(), {}, {}
    srcs = {"train": set(), "test": set()}
    for r in rows:
        assert r["cell_id"] not in seen, ("cell used twice", group, r["cell_id"])
        seen.add(r["cell_id"])
        wit[r["bag_id"]] = wit.get(r["bag_id"], 0) + int(r["instance_label"])
        n[r["bag_id"]] = n.get(r["bag_id"], 0) + 1
        assert int(r["instance_label"]) == (r["class"] != "LYT"), r
        srcs[bags[r["bag_id"]]["split"]].add(src[r["cell_id"]])
    for b, r in bags.items():
        w = want if r["label"] == "1" else 0
        assert n[b] == B and wit[b] == w == int(r["n_witness"]), (group, b, n[b], wit[b], w)
    assert not (srcs["train"] & srcs["test"]), (group, "train and test share sources",
                                                  srcs["train"] & srcs["test"])
    tests = sorted(b for b, r in bags.items() if r["split"] == "test")
    for run in glob.glob(group + "/*/result.csv"):
        d = os.path.dirname(run)
        got = sorted(r["slide_id"] for r in csv.DictReader(open(d + "/test/bags.csv")))
        assert got == tests, (d, "tested", got, "want", tests)
        caches = sorted(os.path.basename(p)[:-3] for p in glob.glob(d + "/cache/*.h5"))
        assert caches == sorted(bags), (d, "cache files", caches)
        inst = list(csv.DictReader(open(d + "/test/instances.csv")))
        assert len(inst) == B * len(tests), (d, len(inst))
results = list(csv.DictReader(open(S + "/results.csv")))
assert len(results) == 8, len(results)
by_run = {}
for r in glob.glob(S + "/wr-*/seed-*/*/result.csv"):
    row = next(csv.DictReader(open(r)))
    by_run[os.path.relpath(os.path.dirname(r), S)] = row
for table, key in (("table-f1.csv", "f1"), ("table-recall.csv", "recall_at_k")):
    rows = list(csv.DictReader(open(S + "/" + table)))
    assert len(rows) == 4, (table, len(rows))
    for r in rows:
        runs = r["runs"].split(";")
        assert len(runs) == 2 == int(r["n"]), (table, r)
        for run in runs:
            assert run.endswith("/" + r["method"]) and abs(float(by_run[run]["witness_rate"]) - float(r["witness_rate"])) < 1e-9, (table, r, run)
        v = [float(by_run[run][key]) for run in runs]
        mean = sum(v) / len(v)
        sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
        assert abs(mean - float(r["mean"])) < 1e-5 and abs(sd - float(r["std"])) < 1e-5, (table, r, v)
        m = float(by_run[runs[0]]["top_k"])
        assert m == K, m
md = open(S + "/table-f1.md").read()
assert "| SLAM-AGS |" in md and "WR 20%" in md and "±" in md, md
svg = open(S + "/figure-1.svg").read()
assert svg.count('class="ss-panel"') == 2 and "SLAM-AGS" in svg, "figure"
print("grid: 8 runs; bags, disjointness, test sets and table cells check out")
PY
    cat "$T/s/table-f1.md" "$T/s/table-recall.md"
    ;;
refusals)
    cells 40
    # 40 normal cells cannot fill 10 bags of 20: refused before any training, saying by how much
    "$ss" study "${GRID[@]}" >"$T/log" 2>&1 && fail "an unfillable grid was accepted"
    grep -q "cannot fill the grid at witness rate" "$T/log" && grep -q "short by" "$T/log" ||
        { cat "$T/log"; fail "the refusal should name the rate and the shortfall"; }
    [ -z "$(ls -d "$T"/s/wr-* 2>/dev/null)" ] || fail "runs were started for an unfillable grid"
    # --by-source without a cells.csv
    rm -rf "$T/cells"; cells 240; rm "$T/cells/cells.csv"
    "$ss" study "${GRID[@]}" --by-source >"$T/log" 2>&1 && fail "--by-source without sources"
    grep -q "no source image" "$T/log" || { cat "$T/log"; fail "--by-source message"; }
    # an existing study with other settings is not resumed with these
    mkdir -p "$T/s" && printf 'cells = elsewhere\n' >"$T/s/study.conf"
    "$ss" study "${GRID[@]}" >"$T/log" 2>&1 && fail "other settings accepted"
    grep -q "other settings" "$T/log" && grep -q "cells = elsewhere" "$T/log" ||
        { cat "$T/log"; fail "the settings message should name the difference"; }
    # bad flags name themselves
    expect "a bad witness rate" "'abc' is not a witness rate" "$ss" study "${GRID[@]}" --rates 10%,abc
    expect "an unknown method" "'nonsense' is not a pretraining method" \
        "$ss" study "${GRID[@]}" --methods slam-ags,nonsense
    expect "an unknown profile" "unknown profile 'huge'" "$ss" study "${GRID[@]}" --profile huge
    "$ss" study --profile paper --estimate --threads 1 | grep -q "hours" || fail "--estimate"
    ;;
*) fail "unknown case $1" ;;
esac
exit 0
