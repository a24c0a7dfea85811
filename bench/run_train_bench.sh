#!/bin/sh
# Encoder-training benchmark: the C trainer (bench/train_bench.c, ss_trainer_step) beside the same
# step in PyTorch 1.13 (bench/train_bench_torch.py), measured in the same run with the same thread
# count, C and PyTorch alternating size by size. Prints one table, method x size -> training
# images/s (views forwarded for the loss: 2 a cell, 1 for supervised; best of the timed steps) of
# each and their ratio, with the forward passes a step runs (C: recomputations included); then the
# peak RSS of one slam-ags step at the reference's batch, 256 cells x 2 views x 224 px.
#
# usage: bench/run_train_bench.sh BUILD_DIR [THREADS] [--methods m,m] [--sizes 64,96,224]
#        (default 2 threads, all seven methods, 64,96,224)
# env: SS_PYTHON (default /usr/bin/python3); CELLS, cells a step below 224 px (default 32) and
# CELLS_LARGE at 224 px and above (default 16), half positive, half negative; STEPS, timed steps
# after one warm-up step (default 5); INSTANCES, PyTorch models built per method and size, the
# fastest kept (default 1); MEMORY=0 skips the peak-RSS runs; LIMIT_GB caps PyTorch's address
# space in its memory runs (default 16; see train_bench_torch.py --memory: it extrapolates from
# two smaller batches and runs the real one only when that fits). OPENBLAS_CORETYPE is unset for
# both sides (OpenBLAS picks the CPU's own kernel; see README, Performance notes); CORETYPE=Haswell
# forces one instead. MALLOC_KEEP=1 (default) runs the speed figures of both sides with glibc's
# malloc keeping freed memory in the process (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=64 GB):
# PyTorch allocates its activations, gradients and temporaries afresh every step, and on this
# machine (a VM where touching memory the kernel handed back costs ~35 us a page) glibc's default
# of mmap/munmap for blocks over 32 MB made PyTorch's step 3-7x slower; the C trainer allocates
# once and barely notices. MALLOC_KEEP=0 measures glibc's defaults. The peak-RSS runs always use
# glibc's defaults. A full run (7 methods, 3 sizes, 2 threads) used 12 CPU-minutes (31 minutes
# of wall time at load 6-14, half of it PyTorch's peak-RSS step of 512 images at 224 px).
# On a machine shared with other work, run it with OMP_WAIT_POLICY=passive (both peers get it).
set -e
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [THREADS] [--methods m,m] [--sizes 64,96,224]" >&2; exit 2; }
build=$1; shift
threads=2
case ${1:-} in [0-9]*) threads=$1; shift ;; esac
methods=slam-ags,pcgrad,cagrad,mgda,weaksupcon,simclr,supervised
sizes=64,96,224
while [ $# -gt 0 ]; do
    case $1 in
        --methods) methods=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        *) echo "run_train_bench: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
py=${SS_PYTHON:-/usr/bin/python3}
cells=${CELLS:-32}
cells_large=${CELLS_LARGE:-16}
steps=${STEPS:-5}
instances=${INSTANCES:-1}
exe=$build/bench/train_bench
[ -x "$exe" ] || { echo "run_train_bench: $exe not built (cmake --build $build --target train_bench)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
have_torch=1
"$py" -c "import torch, torchvision, h5py, PIL" 2>/dev/null || have_torch=0
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
if [ -n "${CORETYPE:-}" ]; then export OPENBLAS_CORETYPE=$CORETYPE; else unset OPENBLAS_CORETYPE; fi

keep=
if [ "${MALLOC_KEEP:-1}" = 1 ]; then
    keep="MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736"
fi
echo "slidestream encoder-training benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(getconf _NPROCESSORS_ONLN) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}, $threads threads, malloc ${keep:-glibc defaults})"
[ $have_torch = 1 ] || echo "(PyTorch not importable by $py: C figures only)"
: > "$tmp/c"
: > "$tmp/t"
t0=$(date +%s)
for s in $(echo "$sizes" | tr ',' ' '); do
    n=$cells
    [ "$s" -ge 224 ] && n=$cells_large
    echo "  $s px, $n cells a step: C ..." >&2
    env $keep "$exe" --threads "$threads" --methods "$methods" --sizes "$s" --cells "$n" \
        --steps "$steps" >> "$tmp/c"
    if [ $have_torch = 1 ]; then
        echo "  $s px, $n cells a step: PyTorch ..." >&2
        env $keep "$py" "$here/train_bench_torch.py" --threads "$threads" --methods "$methods" \
            --sizes "$s" --cells "$n" --steps "$steps" --instances "$instances" >> "$tmp/t"
    fi
    echo "  ($(($(date +%s) - t0)) s so far)" >&2
done

awk -v steps="$steps" '
    FNR == NR { if ($1 == "torch") ver = $2; if ($1 == "train") t[$2 " " $3] = $4 " " $8; next }
    $1 == "corename" { core = $2 }
    $1 == "train" {
        k = $2 " " $3
        if (!(k in c)) order[++n] = k
        c[k] = $4; cells[k] = $6; views[k] = $7; pass[k] = $8; refw[k] = $9
    }
    END {
        printf "\nOpenBLAS kernel %s; PyTorch %s; best of %d steps after a warm-up step\n", core, ver ? ver : "-", steps
        printf "%-11s %5s %6s %6s %10s %12s %7s %12s %9s\n", "method", "px", "cells", "views",
               "C img/s", "torch img/s", "ratio", "C fwd (re)", "torch fwd", ""
        for (i = 1; i <= n; i++) {
            k = order[i]; split(k, p, " ")
            cp = sprintf("%d (%d re)", pass[k], refw[k])
            if (k in t) {
                split(t[k], q, " ")
                printf "%-11s %5d %6d %6d %10.1f %12.1f %6.2fx %12s %9d\n", p[1], p[2], cells[k],
                       views[k], c[k], q[1], c[k] / q[1], cp, q[2]
            } else
                printf "%-11s %5d %6d %6d %10.1f %12s %7s %12s %9s\n", p[1], p[2], cells[k],
                       views[k], c[k], "-", "-", cp, "-"
        }
    }' "$tmp/t" "$tmp/c" | {
    # rows grouped by method, in the order given
    IFS= read -r blank; IFS= read -r info; IFS= read -r head
    printf '%s\n%s\n%s\n' "$blank" "$info" "$head"
    cat > "$tmp/rows"
    for m in $(echo "$methods" | tr ',' ' '); do awk -v m="$m" '$1 == m' "$tmp/rows"; done
}

[ "${MEMORY:-1}" = 0 ] && exit 0
echo
echo "== peak RSS of one slam-ags step: 256 cells (128 positive + 128 negative) x 2 views x 224 px, four view groups of 128 =="
avail=$(awk '$1 == "MemAvailable:" { printf "%d", $2 / 1048576 }' /proc/meminfo)
if [ "$avail" -lt 9 ]; then
    echo "C: skipped (MemAvailable $avail GB; the step needs about 5)"
else
    echo "  C ..." >&2
    "$exe" --memory --threads "$threads" --methods slam-ags --sizes 224 --cells 256 > "$tmp/mem.c"
    awk '$1 == "memory" {
        printf "C:       peak RSS %d MB (model allocations %d MB, input %d MB; %d forward passes, %d of them recomputations)\n", $8, $9, $10, $6, $7 }' "$tmp/mem.c"
fi
if [ $have_torch = 1 ]; then
    echo "  PyTorch ..." >&2
    "$py" "$here/train_bench_torch.py" --memory --threads "$threads" --methods slam-ags --sizes 224 \
        --cells 256 --limit-gb "${LIMIT_GB:-16}" > "$tmp/mem.t"
    awk '
        $1 == "memory_limit_gb" { cap = $2 }
        $1 == "memory_probe" { probes = probes sprintf("%s%d MB at %d cells", probes ? ", " : "", $6, $4) }
        $1 == "memory_estimate" { est = $6 }
        $1 == "memory" { got = $6 }
        $1 == "memory_skipped" { why = $0; sub(/^([^ ]+ ){5}/, "", why) }
        END {
            if (got) printf "PyTorch: peak RSS %d MB (measured under a %.1f GB address-space cap; probes %s, extrapolated %d MB)\n", got, cap, probes, est
            else if (est) printf "PyTorch: not run at full size (%s); estimated %d MB, extrapolated linearly in the batch from one step each at %s\n", why, est, probes
            else printf "PyTorch: not measured (%s)\n", why
        }' "$tmp/mem.t"
fi
