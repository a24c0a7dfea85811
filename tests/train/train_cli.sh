#!/usr/bin/env bash
# train.pipeline / train.resume / train.bad_input — `slidestream train` on generated cells:
#   pipeline  pipelines/pretrain.conf (bag-builder stream -> crop store -> epochs): the store
#             holds every cell with its bag, the run writes its files, both losses are logged
#   resume    a run stopped by SIGTERM (exit 0, last.h5) and resumed with --resume ends
#             bit-identical to an uninterrupted run (h5diff), and so does --max-steps
#   bad       bad input gets a clear error that names it
set -u
mode=${1:?mode}
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
dir=$(mktemp -d /tmp/ss-train.XXXXXX)
trap 'rm -rf "$dir"' EXIT
. "$src/tests/cli.sh"  # fail, expect

# A small run: 4 training bags + 2 test bags of 50 cells at 10% witnesses, 64 px, width 0.25.
pretrain() { # rundir, extra settings...
  local r=$1; shift
  "$ss" run "$src/pipelines/pretrain.conf" rundir="$r" per_class=300 bags=4 test_bags=2 \
      bag_size=50 epochs=2 batch=32 threads=1 "$@" --quiet
}

case $mode in
pipeline)
  "$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
  pretrain "$dir/r" || fail "pretrain pipeline run"
  t=$dir/r/train
  for f in crops.h5 encoder.h5 epoch-001.h5 epoch-002.h5 last.h5 steps.csv curves.svg; do
    [ -s "$t/$f" ] || fail "missing $t/$f"
  done
  "$py" - "$dir/r" <<'PY' || exit 1
import csv, math, sys, h5py
r = sys.argv[1]
bags = list(csv.DictReader(open(r + "/bags/bags.csv")))
with h5py.File(r + "/train/crops.h5", "r") as f:
    n = f["crops"].shape[0]
    assert n == sum(int(b["n_cells"]) for b in bags), (n, bags)
    assert f["crops"].shape[1:] == (96, 96, 3), f["crops"].shape
    names = [s.decode() for s in f["bag_names"][()]]
    assert sorted(names) == sorted(b["bag_id"] for b in bags), names
    labels = dict(zip(names, f["bag_labels"][()].tolist()))
    splits = dict(zip(names, [s.decode() for s in f["bag_splits"][()]]))
    for b in bags:
        assert labels[b["bag_id"]] == int(b["label"]) and splits[b["bag_id"]] == b["split"], b
    bag_of = f["bag"][()]
    ids = f["bag_ids"][()].tolist()
    for b in bags:
        k = ids[names.index(b["bag_id"])]
        assert (bag_of == k).sum() == int(b["n_cells"]), b
rows = list(csv.DictReader(open(r + "/train/steps.csv")))
train_cells = sum(int(b["n_cells"]) for b in bags if b["split"] == "train")
assert len(rows) >= 2 * math.ceil(train_cells / 32), (len(rows), train_cells)
for row in rows:
    for k in ("loss_con", "loss_sim", "norm_g1", "norm_g2", "norm_before", "norm_after"):
        assert math.isfinite(float(row[k])), (k, row)
    assert abs(float(row["loss"]) - float(row["loss_con"]) - float(row["loss_sim"])) < 1e-4 * abs(float(row["loss"])) + 1e-6
with h5py.File(r + "/train/encoder.h5", "r") as f:
    assert "trainer" not in f and "projector.2.weight" in f and "conv1.weight" in f
with h5py.File(r + "/train/epoch-002.h5", "r") as f:
    st = f["trainer/state"][()]
    assert st[1] == 2 and st[2] == 0 and st[3] == len(rows), st
svg = open(r + "/train/curves.svg").read()
assert svg.lstrip().startswith("<") and "NT-Xent" in svg and "similarity" in svg
print("PASS: %d cells in the crop store (bags, labels, splits kept); %d steps logged; "
      "checkpoints, curves and encoder written" % (n, len(rows)))
PY
  # the encoder stage loads the trained encoder
  "$ss" embed --checkpoint "$t/encoder.h5" --out "$dir/emb.h5" --quiet "$dir/r/cells/LYT" \
      || fail "embed with the trained encoder"
  # a second run from the store alone: no upstream stages
  "$ss" train --method simclr --store "$t/crops.h5" --out "$dir/s2" --checkpoint "$dir/r/init.h5" \
      --epochs 1 --batch 32 --threads 1 --quiet || fail "train --store"
  [ -s "$dir/s2/encoder.h5" ] || fail "train --store wrote no encoder"
  echo "PASS: the encoder stage loads the trained encoder; --store trains without the stream"
  ;;
resume)
  command -v h5diff >/dev/null || { echo "SKIP: h5diff (hdf5-tools) is not installed"; exit 77; }
  pretrain "$dir/r" epochs=1 || fail "pretrain pipeline run (to make a crop store)"
  store=$dir/r/train/crops.h5 init=$dir/r/init.h5
  args=(--method slam-ags --store "$store" --checkpoint "$init" --epochs 3 --warmup 1 --batch 32
        --threads 1 --seed 5 --quiet)
  "$ss" train "${args[@]}" --out "$dir/full" || fail "uninterrupted run"
  # SIGTERM in the middle of epoch 2
  "$ss" train "${args[@]}" --out "$dir/term" &
  pid=$!
  for _ in $(seq 1 600); do
    n=0
    [ -f "$dir/term/steps.csv" ] && n=$(($(wc -l < "$dir/term/steps.csv") - 1))
    [ "$n" -ge 9 ] && break  # 7 steps an epoch: stop inside epoch 2
    sleep 0.2
  done
  kill -TERM $pid
  wait $pid; code=$?
  [ $code -eq 0 ] || fail "SIGTERM: exit $code, want 0"
  [ -s "$dir/term/last.h5" ] || fail "SIGTERM wrote no last.h5"
  [ ! -e "$dir/term/encoder.h5" ] || fail "stopped run wrote encoder.h5 (it should not have finished)"
  "$ss" train "${args[@]}" --out "$dir/term" --resume || fail "resume after SIGTERM"
  h5diff "$dir/full/encoder.h5" "$dir/term/encoder.h5" || fail "SIGTERM + resume differs from the uninterrupted run"
  # --max-steps: stop after 4 steps, resume twice (not under the sanitizers: the slowest part,
  # and the SIGTERM case above already covers the same code there)
  if [ -n "${ASAN_OPTIONS:-}" ]; then
    echo "PASS: SIGTERM -> exit 0 + last.h5; the resumed run ends bit-identical (--max-steps case skipped under ASan)"
    exit 0
  fi
  "$ss" train "${args[@]}" --out "$dir/ms" --max-steps 4 || fail "--max-steps run"
  "$ss" train "${args[@]}" --out "$dir/ms" --resume --max-steps 7 || fail "resume 1"
  "$ss" train "${args[@]}" --out "$dir/ms" --resume || fail "resume 2"
  h5diff "$dir/full/encoder.h5" "$dir/ms/encoder.h5" || fail "stop/resume by --max-steps differs"
  cmp <(cut -d, -f1-15 "$dir/full/steps.csv") <(cut -d, -f1-15 "$dir/ms/steps.csv") \
      || fail "steps.csv of the resumed run differs (apart from images/s)"
  # resuming with other settings is refused
  args6=(--method slam-ags --store "$store" --checkpoint "$init" --epochs 3 --warmup 1 --batch 32
         --threads 1 --seed 6 --quiet)
  out=$("$ss" train "${args6[@]}" --out "$dir/ms" --resume 2>&1) && fail "resume with another seed was accepted"
  echo "$out" | grep -q "seed" || fail "resume with another seed: unclear error: $out"
  echo "PASS: SIGTERM -> exit 0 + last.h5; resumed runs end bit-identical to the uninterrupted one"
  ;;
bad)
  pretrain "$dir/r" epochs=1 || fail "pretrain pipeline run (to make a crop store)"
  store=$dir/r/train/crops.h5 init=$dir/r/init.h5
  mkdir -p "$dir/pos" "$dir/neg" "$dir/empty"
  cp "$dir"/r/cells/BLA/BLA_0000[0-2].png "$dir/pos/"
  cp "$dir"/r/cells/LYT/LYT_0000[0-2].png "$dir/neg/"
  "$ss" checkpoint init --out "$dir/noproj.h5" --width 0.25 --input 64 > /dev/null
  expect "empty positive folder" "has no images" \
      "$ss" train step --method slam-ags --checkpoint "$init" --pos "$dir/empty" --neg "$dir/neg" --out "$dir/x.h5"
  expect "empty negative folder" "has no images" \
      "$ss" train step --method slam-ags --checkpoint "$init" --pos "$dir/pos" --neg "$dir/empty" --out "$dir/x.h5"
  expect "checkpoint without a projector" "needs a projection head" \
      "$ss" train step --method slam-ags --checkpoint "$dir/noproj.h5" --pos "$dir/pos" --neg "$dir/neg" --out "$dir/x.h5"
  expect "supervised without fc" "needs an fc head" \
      "$ss" train step --method supervised --checkpoint "$dir/noproj.h5" --pos "$dir/pos" --neg "$dir/neg" --out "$dir/x.h5"
  printf 'not a png' > "$dir/pos/broken.png"
  expect "unreadable image" "broken.png" \
      "$ss" train step --method slam-ags --checkpoint "$init" --pos "$dir/pos" --neg "$dir/neg" --out "$dir/x.h5"
  expect "crop store smaller than --size" "smaller than the network input" \
      "$ss" train --method slam-ags --store "$store" --checkpoint "$init" --size 128 --out "$dir/o1" --quiet
  expect "store with only negative bags" "empty positive set" \
      "$py" - "$store" "$dir/neg.h5" "$ss" "$init" "$dir/o2" <<'PY'
import subprocess, sys, h5py, numpy as np
src, dst, ss, init, out = sys.argv[1:]
with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    for k in f:
        f.copy(k, g)
    for k, v in f.attrs.items():
        g.attrs[k] = v
    lab = g["bag_labels"][()]
    g["bag_labels"][...] = np.zeros_like(lab)
    g["label"][...] = np.zeros_like(g["label"][()])
r = subprocess.run([ss, "train", "--method", "slam-ags", "--store", dst, "--checkpoint", init,
                    "--out", out, "--quiet"], capture_output=True, text=True)
sys.stderr.write(r.stderr)
sys.exit(r.returncode)
PY
  expect "not a crop store" "$init" \
      "$ss" train --method slam-ags --store "$init" --checkpoint "$init" --out "$dir/o3" --quiet
  expect "unknown method" "unknown method 'slam'" \
      "$ss" train --method slam --store "$store" --checkpoint "$init" --out "$dir/o4"
  expect "resume without a run" "nothing to resume" \
      "$ss" train --method slam-ags --store "$store" --out "$dir/o5" --resume --quiet
  echo "PASS: bad input refused with errors that name it"
  ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
