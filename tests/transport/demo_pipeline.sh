#!/usr/bin/env bash
# stream.demo_pipeline — the embedded default job (pipelines/demo.conf) end to end on small
# generated slides: every bag complete, the encoder pretrained, one cache row per cell, the
# aggregator trained and the two test slides (only they) predicted, the run report, the
# foreground GeoJSON and the pictures written and parsing.
set -u
ss=${SLIDESTREAM:?SLIDESTREAM not set}
src=${SS_SOURCE_DIR:?}
py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$ss" run "$src/pipelines/demo.conf" rundir="$dir/run" size=2500 epochs=1 --quiet || { echo "FAIL: demo run failed"; exit 1; }
"$py" "$src/tests/pipeline/check_cache.py" check "$dir/run/cache" "$dir/run/bags" || exit 1
"$py" - "$dir/run" <<'PY' || exit 1
import json, sys, glob, os
run = sys.argv[1]
rep = json.load(open(run + '/report.json'))
assert rep['status'] == 'ok', rep
for s in rep['stages']:
    assert s['exit_code'] == 0, s
masks = glob.glob(run + '/masks/*.geojson')
assert len(masks) == 8, masks
g = json.load(open(masks[0]))
assert g['type'] == 'FeatureCollection' and g['features'], 'empty mask GeoJSON'
cells = json.load(open(run + '/cells-abnormal.geojson'))
assert cells['type'] == 'FeatureCollection' and cells['features'], 'no cells in the GeoJSON'
import csv
pred = list(csv.DictReader(open(run + '/predictions/bags.csv')))
assert sorted(r['slide_id'] for r in pred) == ['test-abnormal', 'test-normal'], pred
for r in pred:
    assert 0 <= float(r['probability']) <= 1 and r['prediction'] in ('0', '1'), r
for f in ('train/encoder.h5', 'train/curves.svg', 'mil/model.h5', 'mil/train.svg'):
    assert os.path.getsize(os.path.join(run, f)) > 0, f
for pic in ('gallery-abnormal.png', 'overlay-abnormal.png', 'predictions/heatmaps/test-abnormal.png',
            'predictions/gallery/test-abnormal.png'):
    with open(os.path.join(run, pic), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n', pic
print('PASS: demo complete: %d stages ok, caches checked, %d cells in the picture GeoJSON'
      % (len(rep['stages']), len(cells['features'])))
PY
