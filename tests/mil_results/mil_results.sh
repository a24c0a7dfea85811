#!/usr/bin/env bash
# mil.results — the result pictures and GeoJSON of `mil predict` (mil_results.h), for both kinds
# of bag: two generated 2000-px smears embedded through pipelines/embed.conf (pixels from the
# slides of the manifest), and simulated bags from pipelines/simulate.conf (pixels from the cell
# images of bag_cells.csv). Checks: one GeoJSON per bag that parses, one detection per cell at its
# centre with measurements equal to instances.csv; heatmap sizes, every cell's mark where the
# picture's sidecar says (for a slide: at its centre scaled to the thumbnail), coloured by its rank
# on viridis, so the most attended cell is drawn hotter than the least; galleries of K tiles in
# rank order showing the right cells, with bars that shrink with attention; bad flags refused.
# SS_KEEP=DIR keeps the outputs there (to look at them).
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
"$py" -c "import h5py, numpy, PIL" 2>/dev/null || { echo "SKIP: $py has no h5py/numpy/PIL"; exit 77; }
if [ -n "${SS_KEEP:-}" ]; then dir=$SS_KEEP; rm -rf "$dir"; mkdir -p "$dir"
else dir=$(mktemp -d /tmp/ss-milres.XXXXXX); trap 'rm -rf "$dir"' EXIT; fi
. "$src/tests/cli.sh"  # fail, expect

"$ss" run "$src/pipelines/embed.conf" rundir="$dir/s" size=2000 encoders=1 --quiet \
    > "$dir/embed.log" 2>&1 || fail "embed run: $(tail -5 "$dir/embed.log")"
"$ss" run "$src/pipelines/simulate.conf" rundir="$dir/f" per_class=100 bags=2 test_bags=2 \
    bag_size=20 witness_rate=0.1 --quiet > "$dir/sim.log" 2>&1 || fail "simulate run: $(tail -5 "$dir/sim.log")"
dim=$("$py" -c "import h5py,glob; print(h5py.File(sorted(glob.glob('$dir/s/cache/*.h5'))[0])['features'].shape[1])")
"$ss" mil init --arch abmil --dim "$dim" --out "$dir/m.h5" > /dev/null || fail "mil init"
K=8
"$ss" mil predict --model "$dir/m.h5" --cache "$dir/s/cache" --out "$dir/ps" --geojson --heatmaps \
    --gallery $K --slides "$dir/s/manifest.csv" --quiet || fail "mil predict (slides)"
"$ss" mil predict --model "$dir/m.h5" --cache "$dir/f/cache" --out "$dir/pf" --geojson --heatmaps \
    --gallery $K --cells "$dir/f/bags/bag_cells.csv" --quiet || fail "mil predict (cell folders)"
# the result files of plain predict are unchanged by the new flags
"$ss" mil predict --model "$dir/m.h5" --cache "$dir/f/cache" --out "$dir/pf0" --quiet || fail "mil predict (plain)"
cmp -s "$dir/pf/instances.csv" "$dir/pf0/instances.csv" && cmp -s "$dir/pf/bags.csv" "$dir/pf0/bags.csv" \
    || fail "bags.csv/instances.csv differ with the picture flags"
[ ! -e "$dir/pf0/geojson" ] || fail "plain predict made a geojson folder"

"$py" - "$dir" $K <<'PY' || exit 1
import csv, glob, json, os, sys
import h5py, numpy as np
from PIL import Image
d, K = sys.argv[1], int(sys.argv[2])

# viridis as mil_results.h documents it (samples at t = 0, 1/8, ..., 1, linear between)
V = np.array([[68, 1, 84], [72, 45, 123], [59, 82, 139], [44, 114, 142], [33, 144, 140],
              [39, 173, 129], [93, 200, 99], [170, 220, 50], [253, 231, 37]], float)
T = np.linspace(0, 1, 801)
LUT = np.stack([np.interp(T * 8, np.arange(9), V[:, c]) for c in range(3)], 1)
def heat(rgb):  # position on the map of a pixel, and how far it is from the map
    e = np.abs(LUT - np.asarray(rgb, float)).sum(1)
    return T[e.argmin()], e.min()

def check(run, cache, kind):
    inst = {}
    for r in csv.DictReader(open(f"{d}/{run}/instances.csv")):
        inst.setdefault(r["slide_id"], []).append(r)
    assert inst, run
    for bag, rows in sorted(inst.items()):
        n = len(rows)
        byid = {int(r["cell_id"]): r for r in rows}
        with h5py.File(f"{d}/{cache}/{bag}.h5") as h:
            centres = h["centres"][:]; ids = h["cell_ids"][:]; p0 = h["coords"].attrs["patch_size_level0"]
        # GeoJSON: one detection per cell, around its centre, measurements = instances.csv
        g = json.load(open(f"{d}/{run}/geojson/{bag}.geojson"))
        assert g["type"] == "FeatureCollection" and len(g["features"]) == n, (bag, len(g["features"]), n)
        seen = set()
        for f, c, cid in zip(g["features"], centres, ids):
            pr = f["properties"]
            assert pr["objectType"] == "detection" and pr["classification"]["name"].startswith("Attention"), pr
            assert pr["name"] == f"cell {cid}", (pr["name"], cid)
            ring = np.array(f["geometry"]["coordinates"][0])
            assert f["geometry"]["type"] == "Polygon" and (ring[0] == ring[-1]).all()
            assert np.abs(ring[:-1].mean(0) - c).max() < 0.5, (ring[:-1].mean(0), c)
            r = byid[int(cid)]
            m = pr["measurements"]
            assert abs(m["attention"] - float(r["attention"])) <= 1e-7 * max(1, abs(m["attention"])), (m, r)
            assert m["attention_rank"] == int(r["rank"]), (m, r)
            seen.add(int(cid))
        assert seen == set(byid), bag
        # heatmap: sidecar = every cell in rank order with where its colour is
        img = np.asarray(Image.open(f"{d}/{run}/heatmaps/{bag}.png").convert("RGB"))
        H, W = img.shape[:2]
        side = list(csv.DictReader(open(f"{d}/{run}/heatmaps/{bag}.csv")))
        assert [int(s["rank"]) for s in side] == list(range(1, n + 1)), bag
        assert sorted(int(s["cell_id"]) for s in side) == sorted(byid), bag
        for s in side:
            assert int(byid[int(s["cell_id"])]["rank"]) == int(s["rank"]), s
        if kind == "slide":
            assert H == 1024 and 1024 < W < 1400, (W, H)  # 2000 px square slide, thumbnail 1024
            for s in side:
                c = byid[int(s["cell_id"])]
                assert abs(float(s["px"]) - int(c["x"]) * 1024 / 2000) < 1.5, (s, c)
                assert abs(float(s["py"]) - int(c["y"]) * 1024 / 2000) < 1.5, (s, c)
        else:
            cols = int(np.ceil(np.sqrt(n)))
            assert W > cols * 10 and H >= (n + cols - 1) // cols * 10, (W, H)
        def at(s):
            return img[int(float(s["py"])), int(float(s["px"]))]
        top, low = heat(at(side[0])), heat(at(side[-1]))
        assert top[1] < 12 and low[1] < 12, ("not a viridis colour", at(side[0]), at(side[-1]))
        assert top[0] > 0.97 and low[0] < 0.03, (bag, top, low)
        # the rank-1 cell is drawn last (on top): every mark's colour follows its rank
        if kind != "slide":
            t = [heat(at(s))[0] for s in side]
            assert all(a >= b - 1e-9 for a, b in zip(t, t[1:])), t
        # gallery: K tiles (6-px gutters, 128-px crops, 22-px label band), rank order = sidecar
        gal = np.asarray(Image.open(f"{d}/{run}/gallery/{bag}.png").convert("RGB")).astype(int)
        gs = list(csv.DictReader(open(f"{d}/{run}/gallery/{bag}.csv")))
        k = min(K, n)
        assert [int(s["rank"]) for s in gs] == list(range(1, k + 1)), gs
        for s in gs:
            r = byid[int(s["cell_id"])]
            assert int(r["rank"]) == int(s["rank"]) and abs(float(s["attention"]) - float(r["attention"])) < 1e-7
        cols = k if k <= 5 else int(np.ceil(np.sqrt(k * 1.5)))
        rows = (k + cols - 1) // cols
        assert gal.shape[:2] == (rows * 156 + 6, cols * 134 + 6), (gal.shape, rows, cols)
        bars = []
        for i, s in enumerate(gs):
            x, y = 6 + (i % cols) * 134, 6 + (i // cols) * 156
            bar = gal[y + 128 + 15, x:x + 128]
            bars.append(int((np.abs(bar - [225, 225, 225]).sum(1) > 30).sum()))
            tile = gal[y:y + 128, x:x + 128]
            if kind == "cells":  # the tile is the cell's own image
                ref = np.asarray(Image.open(s["image"]).convert("RGB").resize((128, 128), Image.BOX)).astype(int)
                assert np.abs(tile - ref).mean() < 4, (bag, i, np.abs(tile - ref).mean())
            else:  # a crop centred on a nucleated cell: its dark nucleus is in the middle
                mid = tile[44:84, 44:84].sum(2).min()
                assert mid < tile.sum(2).mean() - 150, (bag, i, mid, tile.sum(2).mean())
        top_att = float(gs[0]["attention"])
        for b, s in zip(bars, gs):
            assert abs(b - 128 * float(s["attention"]) / top_att) <= 1.01, (bars, gs)
        assert bars == sorted(bars, reverse=True), bars
    print(f"ok: {run}: {len(inst)} bags: GeoJSON = instances.csv, heatmap rank 1 at t={top[0]:.2f} "
          f"vs rank n at t={low[0]:.2f}, gallery of {min(K, n)} tiles in rank order")

check("ps", "s/cache", "slide")
check("pf", "f/cache", "cells")
PY

expect "--heatmaps without pixels" "--slides MANIFEST" \
    "$ss" mil predict --model "$dir/m.h5" --cache "$dir/f/cache" --out "$dir/x" --heatmaps
printf 'bag_id,cell_id\nnormal_000,a\n' > "$dir/bad.csv"
expect "cells CSV without paths" "bad.csv: want columns bag_id and path" \
    "$ss" mil predict --model "$dir/m.h5" --cache "$dir/f/cache" --out "$dir/x" --gallery 3 --cells "$dir/bad.csv"
# a bag in neither table: warned and skipped, the other outputs still written
out=$("$ss" mil predict --model "$dir/m.h5" --cache "$dir/f/cache" --out "$dir/y" --heatmaps \
      --slides "$dir/s/manifest.csv" --quiet 2>&1) || fail "unknown bags: $out"
echo "$out" | grep -q "neither in --slides nor in --cells" || fail "no warning for a bag without pixels: $out"
[ -s "$dir/y/instances.csv" ] && [ -z "$(ls "$dir/y/heatmaps")" ] || fail "unknown bags: outputs"
echo "ok: a bag without pixels: $(echo "$out" | head -1)"
echo "PASS"
