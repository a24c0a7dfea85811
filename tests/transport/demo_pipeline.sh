#!/usr/bin/env bash
# stream.demo_pipeline — the embedded default job (pipelines/demo.conf) end to end on small
# generated slides: both bags complete, one cache row per cell, the run report, the foreground
# GeoJSON and the pictures are written and parse.
set -u
ss=${SLIDESTREAM:?SLIDESTREAM not set}
src=${SS_SOURCE_DIR:?}
py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy"; exit 77; }
dir=$(mktemp -d /tmp/ss-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$ss" run "$src/pipelines/demo.conf" rundir="$dir/run" size=2500 --quiet || { echo "FAIL: demo run failed"; exit 1; }
"$py" "$src/tests/pipeline/check_cache.py" check "$dir/run/cache" "$dir/run/bags" || exit 1
"$py" - "$dir/run" <<'PY' || exit 1
import json, sys, glob, os
run = sys.argv[1]
rep = json.load(open(run + '/report.json'))
assert rep['status'] == 'ok', rep
for s in rep['stages']:
    assert s['exit_code'] == 0, s
masks = glob.glob(run + '/masks/*.geojson')
assert len(masks) == 2, masks
g = json.load(open(masks[0]))
assert g['type'] == 'FeatureCollection' and g['features'], 'empty mask GeoJSON'
cells = json.load(open(run + '/cells-abnormal.geojson'))
assert cells['type'] == 'FeatureCollection' and cells['features'], 'no cells in the GeoJSON'
for pic in ('gallery-abnormal.png', 'overlay-abnormal.png'):
    with open(os.path.join(run, pic), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n', pic
print('PASS: demo complete: %d stages ok, caches checked, %d cells in the picture GeoJSON'
      % (len(rep['stages']), len(cells['features'])))
PY
