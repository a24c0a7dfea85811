#!/usr/bin/env bash
# mil.cli — the aggregator commands and the live aggregator stage end to end on embedding caches of simulated bags
# (pipelines/simulate.conf): for every architecture built in, `mil init`, `mil train` (model.h5,
# train.csv, train.svg) and `mil predict` (bags.csv, instances.csv, metrics.json with Recall@K);
# checks the files' headers, that probabilities are softmax probabilities, that each bag's
# attention sums to 1 and its ranks are a permutation, then bad input.
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-mil.XXXXXX)
trap 'rm -rf "$dir"' EXIT
. "$src/tests/cli.sh"  # fail, expect

"$ss" run "$src/pipelines/simulate.conf" rundir="$dir/r" per_class=300 bags=6 test_bags=4 \
    bag_size=30 witness_rate=0.1 --quiet || fail "simulate run"
cache=$dir/r/cache
dim=$("$py" -c "import h5py,glob; print(h5py.File(sorted(glob.glob('$cache/*.h5'))[0])['features'].shape[1])")
archs=""
for a in abmil pamil abmilx dtfd; do
  if "$ss" mil init --arch $a --dim "$dim" --out "$dir/$a-init.h5" > /dev/null 2> "$dir/init.err"; then
    archs="$archs $a"
  else
    grep -q "not built into" "$dir/init.err" || fail "mil init --arch $a: $(cat "$dir/init.err")"
    echo "note: $a is not built into this slidestream"
  fi
done
[ -n "$archs" ] || fail "no architecture built in"
for a in $archs; do
  "$ss" mil train --arch $a --cache "$cache" --out "$dir/$a" --epochs 4 --quiet || fail "mil train --arch $a"
  "$ss" mil predict --model "$dir/$a/model.h5" --cache "$cache" --out "$dir/$a-pred" --top-k 3 \
      --witnesses "$dir/r/bags/bag_cells.csv" --quiet || fail "mil predict ($a)"
  "$py" - "$dir/$a" "$dir/$a-pred" "$dir/r/bags/bags.csv" <<'PY' || exit 1
import csv, json, math, sys
tdir, pdir, bags_csv = sys.argv[1:]
rows = list(csv.DictReader(open(tdir + "/train.csv")))
assert rows and list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                                  "val_auc", "val_f1", "selected"], rows[:1]
assert open(tdir + "/train.svg").read().lstrip().startswith("<")
bags = {b["bag_id"]: b for b in csv.DictReader(open(bags_csv))}
with open(pdir + "/bags.csv") as f:
    assert f.readline().strip() == "slide_id,label,probability,prediction"
with open(pdir + "/instances.csv") as f:
    assert f.readline().strip() == "slide_id,cell_id,x,y,attention,rank"
pred = list(csv.DictReader(open(pdir + "/bags.csv")))
assert sorted(p["slide_id"] for p in pred) == sorted(bags), "every bag predicted once"
for p in pred:
    pr = float(p["probability"])
    assert 0 <= pr <= 1 and int(p["prediction"]) == (pr > 0.5), p
    assert int(p["label"]) == int(bags[p["slide_id"]]["label"]), p
att = {}
for r in csv.DictReader(open(pdir + "/instances.csv")):
    att.setdefault(r["slide_id"], []).append((float(r["attention"]), int(r["rank"])))
for b, cells in att.items():
    assert len(cells) == int(bags[b]["n_cells"]), b
    assert abs(sum(a for a, _ in cells) - 1) < 1e-4, (b, sum(a for a, _ in cells))
    assert sorted(r for _, r in cells) == list(range(1, len(cells) + 1)), b
    top = max(cells)  # most attended has rank 1
    assert top[1] == 1 or top[0] == min(a for a, r in cells if r == 1), b
m = json.load(open(pdir + "/metrics.json"))
for k in ("accuracy", "f1", "roc_auc", "recall_at_k"):
    assert k in m, k
assert m["bags"] == len(bags) and m["top_k"] == 3
assert m["recall_at_k"] is None or 0 <= m["recall_at_k"] <= 1
print("ok: %s: train.csv %d epochs; %d bags predicted; metrics %s" %
      (tdir.rsplit("/", 1)[-1], len(rows), len(pred),
       {k: m[k] for k in ("accuracy", "f1", "roc_auc", "recall_at_k")}))
PY
done
# mean ± std over runs: here over the architectures' runs, checked against the files
runs=""; for x in $archs; do runs="$runs $dir/$x-pred"; done
"$ss" mil summary --out "$dir/summary.json" $runs > "$dir/summary.txt" || fail "mil summary"
"$py" - "$dir/summary.json" $runs <<'PY' || exit 1
import json, statistics, sys
s = json.load(open(sys.argv[1]))
ms = [json.load(open(d + "/metrics.json")) for d in sys.argv[2:]]
assert s["runs"] == len(ms)
for k in ("accuracy", "f1", "roc_auc", "recall_at_k"):
    vals = [m[k] for m in ms if m[k] is not None]
    if not vals:
        assert s[k] is None, k
        continue
    assert abs(s[k]["mean"] - statistics.mean(vals)) < 1e-5, (k, s[k], vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    assert abs(s[k]["std"] - sd) < 1e-5, (k, s[k], vals)
print("ok: mil summary: mean and sample std of every metric over %d runs" % len(ms))
PY
a=${archs# }; a=${a%% *}
# the live stage: replay -> aggregator predicts each bag when complete, as `mil predict` does
"$ss" run "$src/pipelines/aggregate.conf" rundir="$dir/live" cache="$cache" model="$dir/$a/model.h5" \
    "witnesses=--witnesses $dir/r/bags/bag_cells.csv" --quiet || fail "aggregate pipeline"
for f in bags.csv instances.csv; do
  cmp <(sort "$dir/live/predictions/$f") <(sort "$dir/$a-pred/$f") \
      || fail "the live aggregator's $f differs from mil predict's"
done
echo "ok: the live aggregator stage predicts every bag as mil predict does ($a)"
"$ss" mil init --arch "$a" --dim $((dim + 1)) --out "$dir/wide.h5" > /dev/null
expect "cache of another feature width" "width $dim, the model takes $((dim + 1))" \
    "$ss" mil predict --model "$dir/wide.h5" --cache "$cache" --out "$dir/x"
head -c 2000 "$dir/$a/model.h5" > "$dir/trunc.h5"
expect "truncated checkpoint" "trunc.h5" "$ss" mil predict --model "$dir/trunc.h5" --cache "$cache" --out "$dir/x"
mkdir -p "$dir/nolabel"
cp "$cache"/*.h5 "$dir/nolabel/"
f=$(ls "$dir/nolabel"/normal_*.h5 | head -1)
"$py" -c "import h5py; h5py.File('$f', 'r+').attrs['label'] = -1"
expect "a training bag without a label" "has no label" \
    "$ss" mil train --arch "$a" --cache "$dir/nolabel" --out "$dir/x" --epochs 1 --quiet
mkdir -p "$dir/empty"
"$py" - "$f" "$dir/empty/empty.h5" <<'PY'
import sys, h5py
src, dst = sys.argv[1:]
with h5py.File(src, "r") as s, h5py.File(dst, "w") as d:
    for k, v in s.attrs.items():
        d.attrs[k] = v
    d.attrs["slide_id"] = "empty"
    for k in s:
        d.create_dataset(k, shape=(0,) + s[k].shape[1:], dtype=s[k].dtype)
        for ak, av in s[k].attrs.items():
            d[k].attrs[ak] = av
PY
expect "an empty bag" "empty bag" "$ss" mil predict --model "$dir/$a/model.h5" --cache "$dir/empty" --out "$dir/x"
expect "unknown architecture" "unknown architecture 'abmill'" "$ss" mil init --arch abmill --dim 8 --out "$dir/x.h5"
echo "PASS: mil init/train/predict for$archs; result files as specified; bad input refused"
