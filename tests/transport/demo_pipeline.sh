#!/usr/bin/env bash
# stream.demo_pipeline — the embedded default job (pipelines/demo.conf) end to end on a small
# generated slide: every tile the tiler announced arrives at the collector; the run report and
# the foreground GeoJSON are written and parse.
set -u
ss=${SLIDESTREAM:?SLIDESTREAM not set}
src=${SS_SOURCE_DIR:?}
dir=$(mktemp -d /tmp/ss-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$ss" run "$src/pipelines/demo.conf" rundir="$dir/run" size=3000 --quiet || { echo "FAIL: demo run failed"; exit 1; }
/usr/bin/python3 - "$dir/run" <<'PY' || exit 1
import json, sys, glob
run = sys.argv[1]
rep = json.load(open(run + '/report.json'))
assert rep['status'] == 'ok', rep
st = {s['name']: s for s in rep['stages']}
assert st['tiler']['exit_code'] == 0 and st['count']['exit_code'] == 0, st
col = json.load(open(run + '/collected.json'))
assert col['complete'] and col['items'] > 0, col
assert col['items'] == st['tiler']['out'], (col['items'], st['tiler']['out'])
masks = glob.glob(run + '/masks/*.geojson')
assert masks, 'no mask GeoJSON'
g = json.load(open(masks[0]))
assert g['type'] == 'FeatureCollection' and g['features'], 'empty GeoJSON'
print('PASS: %d tiles collected, complete; report and mask written' % col['items'])
PY
