#!/bin/sh
# cache.embed: `slidestream embed` on synthetic cell images. Usage: embed_cli.sh TEST_EMBED DIR
# Checks: N and sorted names, centre-crop + features bit-identical to a direct forward (both
# feature kinds), an undersized image refused by name with a non-zero exit, duplicates and
# mixed file/folder inputs, a projection request on a checkpoint without a projector, and no
# leftover .tmp.
set -u
helper=$1 d=$2
ss=${SLIDESTREAM:?SLIDESTREAM not set}
fail=0
die() { echo "FAIL: $*"; fail=1; }
rm -rf "$d" && mkdir -p "$d"

"$ss" synth cells --out "$d/cells" --per-class 2 --size 75 --seed 3 --quiet || { echo "FAIL: synth"; exit 1; }
"$ss" synth cells --out "$d/small" --per-class 1 --size 40 --seed 4 --quiet || { echo "FAIL: synth"; exit 1; }
mkdir -p "$d/cells/ZZZ/deeper"
cp "$d/small/LYT/$(ls "$d/small/LYT" | head -1)" "$d/cells/ZZZ/deeper/small.png"
big=$(ls "$d/cells/BLA" | head -1)
n_ok=$(find "$d/cells" -name '*.png' ! -name small.png | wc -l)
[ "$n_ok" -ge 10 ] || die "expected >= 10 synthetic images, got $n_ok"

"$helper" mkckpt "$d/ck.h5" proj || exit 1
"$helper" mkckpt "$d/ck_noproj.h5" || exit 1

# pooled feature; the folder plus one of its files again (embedded once)
"$ss" embed --checkpoint "$d/ck.h5" --out "$d/out.h5" --batch 4 --quiet \
    "$d/cells" "$d/cells/BLA/$big" 2>"$d/err.txt"
rc=$?
cat "$d/err.txt"
[ $rc -ne 0 ] || die "undersized image did not make the exit status non-zero"
grep -q "small.png" "$d/err.txt" || die "refusal does not name the file"
grep -q "40x40" "$d/err.txt" && grep -q "64x64" "$d/err.txt" || die "refusal lacks the sizes"
[ -f "$d/out.h5" ] || die "no output despite good images"
[ ! -e "$d/out.h5.tmp" ] || die "leftover out.h5.tmp"
"$helper" verify "$d/ck.h5" "$d/out.h5" pooled 4 "$n_ok" || die "pooled verification"

# projection feature, exact-size and larger images only (clean run: exit 0)
rm -f "$d/cells/ZZZ/deeper/small.png"
"$ss" embed --checkpoint "$d/ck.h5" --feature projection --out "$d/proj.h5" --batch 3 --quiet \
    "$d/cells" || die "clean projection run failed"
"$helper" verify "$d/ck.h5" "$d/proj.h5" projection 3 "$n_ok" || die "projection verification"

# a checkpoint without a projector
if "$ss" embed --checkpoint "$d/ck_noproj.h5" --feature projection --out "$d/np.h5" --quiet \
    "$d/cells" 2>"$d/err2.txt"; then
    die "projection on a checkpoint without a projector succeeded"
fi
cat "$d/err2.txt"
grep -qi "projection" "$d/err2.txt" || die "no clear projector message"
[ ! -e "$d/np.h5" ] || die "output written for a failed run"

# usage errors exit 2
"$ss" embed --checkpoint "$d/ck.h5" "$d/cells" 2>/dev/null
[ $? -eq 2 ] || die "missing --out is not a usage error"
"$ss" embed --checkpoint "$d/ck.h5" --feature logits --out "$d/x.h5" "$d/cells" 2>/dev/null
[ $? -eq 2 ] || die "bad --feature is not a usage error"

# h5py reads names as strings (optional)
py=${SS_PYTHON:-/usr/bin/python3}
if "$py" -c 'import h5py' 2>/dev/null; then
    "$py" - "$d/out.h5" <<'PY' || die "h5py check"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    names = [n.decode() if isinstance(n, bytes) else n for n in f["names"][:]]
    assert names == sorted(names, key=lambda s: s.encode()), "names not in byte order"
    assert f["features"].dtype == "float32" and f["features"].shape[0] == len(names)
    print("h5py: %d names, features %s" % (len(names), f["features"].shape))
PY
else
    echo "h5py not available: names check via h5py skipped"
fi

[ $fail -eq 0 ] && echo "cache.embed: all checks passed"
exit $fail
