#!/bin/sh
# MIL aggregator benchmark: slidestream's ABMIL, PAMIL, ABMILX and DTFD-MIL (bench/mil_speed_bench.c,
# lib/mil) beside the same models in PyTorch 1.13 (bench/mil_speed_bench_torch.py: the parity
# tests' reference modules), same thread count, C and PyTorch alternating model by model. Default
# configurations (`mil init`), dim 512 (ResNet-18 features). Prints one table:
#   training epochs/s   an epoch = one optimiser step (Adam; AdamW for ABMILX) per bag, over BAGS
#                       bags of CELLS cells; best of EPOCHS timed epochs after a warm-up epoch
#   inference bags/s    eval forward (logits and attention) of the same bags, best pass
#   large bag           one eval forward on one bag of LARGE cells: seconds and peak RSS (MB) of
#                       the whole process (bag and model included; PyTorch's includes ~200 MB of
#                       torch itself)
# ABMILX's attention is quadratic in the bag (A+ compares every cell with every other): plain
# PyTorch would hold a (8, n, n) score matrix (320 GB at n = 100 000), so its large run uses the
# chunked evaluation of tests/mil_predict_parity/predict_parity.py (blocks of 64 query rows), and
# every PyTorch large run caps its address space (LIMIT_GB, default 10, lowered to MemAvailable -
# 3 GB) so a mistake ends in a MemoryError, not the OOM killer. Both sides' ABMILX large run costs
# n^2 x 512 multiply-adds; at ABMILX_LARGE (default 20 000; 100 000 takes 25x as long) the table
# also gives the quadratic extrapolation of the seconds to LARGE cells.
#
# usage: bench/run_mil_bench.sh BUILD_DIR [THREADS]     (default 2 threads)
# env: SS_PYTHON (default /usr/bin/python3); CELLS (1000), BAGS (8), EPOCHS (2), LARGE (100000),
#      ABMILX_LARGE (20000), ARCHS (abmil,pamil,abmilx,dtfd), LIMIT_GB (10)
set -e
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [THREADS]" >&2; exit 2; }
build=$1
threads=${2:-2}
py=${SS_PYTHON:-/usr/bin/python3}
cells=${CELLS:-1000} bags=${BAGS:-8} epochs=${EPOCHS:-2} large=${LARGE:-100000}
xlarge=${ABMILX_LARGE:-20000} archs=${ARCHS:-abmil,pamil,abmilx,dtfd} limit=${LIMIT_GB:-10}
exe=$build/bench/mil_speed_bench
[ -x "$exe" ] || { echo "run_mil_bench: $exe not built (cmake --build $build --target mil_speed_bench)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
have_torch=1
"$py" -c "import torch, h5py, numpy" 2>/dev/null || have_torch=0
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
echo "slidestream MIL benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(getconf _NPROCESSORS_ONLN) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $threads threads, dim 512, $bags bags x $cells cells, best of $epochs epochs)"
[ $have_torch = 1 ] || echo "(PyTorch not importable by $py: C figures only)"
: > "$tmp/c"
: > "$tmp/t"
t0=$(date +%s)
for a in $(echo "$archs" | tr ',' ' '); do
    n=$large
    [ "$a" = abmilx ] && n=$xlarge
    echo "  $a: C ..." >&2
    "$exe" "$a" --cells "$cells" --bags "$bags" --epochs "$epochs" --threads "$threads" >> "$tmp/c"
    "$exe" "$a" --large "$n" --threads "$threads" >> "$tmp/c"
    if [ $have_torch = 1 ]; then
        echo "  $a: PyTorch ..." >&2
        "$py" "$here/mil_speed_bench_torch.py" "$a" --cells "$cells" --bags "$bags" \
            --epochs "$epochs" --threads "$threads" >> "$tmp/t"
        "$py" "$here/mil_speed_bench_torch.py" "$a" --large "$n" --threads "$threads" \
            --limit-gb "$limit" >> "$tmp/t" || echo "large_failed $a $n (exit $?)" >> "$tmp/t"
    fi
    echo "  ($(($(date +%s) - t0)) s so far; load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

awk -v archs="$archs" -v large="$large" '
    FNR == NR {
        if ($1 == "torch") ver = $2
        else if ($1 == "train") tt[$2] = $5
        else if ($1 == "infer") ti[$2] = $5
        else if ($1 == "large") { tl[$2] = $4; tr[$2] = $5; tn[$2] = $3 }
        else if ($1 == "large_failed") tl[$2] = "failed"
        next
    }
    $1 == "train" { ct[$2] = $5 }
    $1 == "infer" { ci[$2] = $5 }
    $1 == "large" { cl[$2] = $4; cr[$2] = $5; cn[$2] = $3 }
    function ratio(c, t) { return (c > 0 && t > 0) ? sprintf("%.2fx", c / t) : "-" }
    function num(v, f) { return v == "" ? "-" : (v == "failed" ? v : sprintf(f, v)) }
    END {
        printf "\nPyTorch %s. ratio = C / PyTorch for rates, PyTorch / C for seconds and RSS (> 1: C better)\n", ver ? ver : "-"
        printf "%-7s | %9s %9s %6s | %9s %9s %6s | %7s %8s %8s %6s %8s %8s %6s\n", "model",
               "C ep/s", "torch", "ratio", "C bag/s", "torch", "ratio", "large n", "C s", "torch s",
               "ratio", "C MB", "torch MB", "ratio"
        split(archs, A, ",")
        for (i = 1; i in A; i++) {
            a = A[i]
            printf "%-7s | %9s %9s %6s | %9s %9s %6s | %7s %8s %8s %6s %8s %8s %6s\n", a,
                   num(ct[a], "%.3f"), num(tt[a], "%.3f"), ratio(ct[a], tt[a]),
                   num(ci[a], "%.2f"), num(ti[a], "%.2f"), ratio(ci[a], ti[a]),
                   cn[a], num(cl[a], "%.2f"), num(tl[a], "%.2f"), ratio(tl[a], cl[a]),
                   num(cr[a], "%.0f"), num(tr[a], "%.0f"), ratio(tr[a], cr[a])
            if (cn[a] != "" && cn[a] + 0 != large + 0 && cl[a] > 0) {
                s = (large / cn[a]) ^ 2
                printf "%-7s   (%s at %d cells, quadratic extrapolation: C %.0f s%s)\n", "", a, large,
                       cl[a] * s, (tl[a] > 0 ? sprintf(", PyTorch %.0f s", tl[a] * s) : "")
            }
        }
    }' "$tmp/t" "$tmp/c"
