#!/usr/bin/env bash
# synth.difficulty — issue #13's criterion for the generated cells at `synth cells`' default
# difficulty: an abnormal cell must not give itself away to an untrained encoder, yet keep a sign
# that a trained one learns. On 1 500 generated cells (300 per class, seed 1, 96 px at
# 0.4 µm/px, the encoders see the centre 64 px), the linear probe of tests/train/probe.py
# (5-fold logistic regression on standardised pooled features, normal = LYT) must give
#   - on a randomly initialised ResNet-18 (width 1, 64 px input, seed 1): ROC-AUC <= 0.85
#     (the same probe gives 0.825 on 6 590 real Chula red cells, 0.999 on cells at difficulty 0);
#   - on a supervised encoder: ROC-AUC >= 0.95. The encoder is a ResNet-18 of width 0.25
#     (64 px) trained by pipelines/pretrain.conf, method supervised, on other generated cells
#     (seed 2, 400 per class, made 64 px at 0.4 µm/px so that every training view is centred)
#     in bags at witness rate 1, where a bag's label is each of its cells' label.
# It asserts that the default is hard for features that learned nothing and learnable, not that
# a method wins. Prints both figures; the measurements behind the default are in
# `slidestream synth cells --help`.
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-difficulty.XXXXXX)
trap 'rm -rf "$dir"' EXIT
. "$src/tests/cli.sh"  # fail, step
t0=$SECONDS
probe() { # CHECKPOINT -> the probe's ROC-AUC on the probe cells
  step "$dir/embed.log" "embed with $1" "$ss" embed --checkpoint "$1" --feature pooled \
      --out "$dir/e.h5" --quiet "$dir/cells"
  "$py" "$src/tests/train/probe.py" "$dir/e.h5" LYT | sed -nE 's/.*probe_auc=([0-9.]+).*/\1/p'
}

# the cells as every pipeline gets them: no --difficulty, the default
step "$dir/cells.log" "synth cells (probe set)" "$ss" synth cells --out "$dir/cells" \
    --per-class 300 --seed 1 --quiet
step "$dir/init.log" "checkpoint init" "$ss" checkpoint init --out "$dir/random.h5" --width 1 \
    --input 64 --seed 1
auc_random=$(probe "$dir/random.h5")
echo "random-init ResNet-18 (width 1, 64 px): probe ROC-AUC $auc_random ($((SECONDS - t0)) s)"

step "$dir/train-cells.log" "synth cells (training set)" "$ss" synth cells \
    --out "$dir/train-cells" --per-class 400 --seed 2 --size 64 --mpp 0.4 --quiet
# cells= replaces the pipeline's own generated set (per_class=1 keeps that one tiny)
step "$dir/train.log" "supervised training" "$ss" run "$src/pipelines/pretrain.conf" \
    rundir="$dir/sup" cells="$dir/train-cells" per_class=1 method=supervised witness_rate=1 \
    bags=8 test_bags=0 bag_size=100 seed=2 epochs=16 warmup=1 batch=64 lr=0.05 size=64 \
    width=0.25 threads=2 --quiet
auc_sup=$(probe "$dir/sup/train/encoder.h5")
echo "supervised ResNet-18 (width 0.25, 64 px, 16 epochs): probe ROC-AUC $auc_sup ($((SECONDS - t0)) s)"

"$py" - "$auc_random" "$auc_sup" <<'PY' || exit 1
import sys
r, s = map(float, sys.argv[1:])
ok = True
if not r <= 0.85:
    print("FAIL: random-init probe ROC-AUC %.4f > 0.85: abnormal cells show at a glance" % r)
    ok = False
if not s >= 0.95:
    print("FAIL: supervised probe ROC-AUC %.4f < 0.95: no learnable sign left" % s)
    ok = False
sys.exit(0 if ok else 1)
PY
echo "PASS: random-init $auc_random <= 0.85, supervised $auc_sup >= 0.95 ($((SECONDS - t0)) s)"
