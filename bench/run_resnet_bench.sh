#!/bin/sh
# ResNet-18 benchmark: C (bench/resnet_bench.c) beside PyTorch 1.13 (bench/resnet_bench_torch.py),
# measured in the same run with the same thread count, under OPENBLAS_CORETYPE=Haswell (this
# environment's default, which picks a slower sgemm kernel on AVX-512 CPUs) and with it unset
# (OpenBLAS auto-detection). Prints images/s with ratios, model GFLOP/s vs the sgemm peak, and
# peak RSS of a training step at batch 256, 96 px.
#
# usage: bench/run_resnet_bench.sh [BUILD_DIR [THREADS [SIZES]]]   (default build 2 64,96,224)
# env: SS_PYTHON (default /usr/bin/python3), MIN_TIME (seconds per figure, default 0.5; each
# figure is the best of the timed runs after a warm-up of at least 3 calls and MIN_TIME/2 s;
# PyTorch's figures are the best of 3 freshly built models, since its speed differs by up to
# 2x from one model instance to the next), REPEAT (runs of every size,
# alternating C and PyTorch; default 1 — on a loaded machine 2-3 give steadier figures),
# MEMORY=0 skips the peak-memory runs, CPU_TIME=1 times with process CPU time (load-robust, for
# THREADS=1 only). Per-layer conv GFLOP/s: bench/conv_bench (NN layers).
# On a machine shared with other work, run it with OMP_WAIT_POLICY=passive (both peers get it):
# with the default spinning, an OpenMP thread that waits at a barrier for a peer thread the
# kernel has descheduled burns its own core, and a run can come out several times slower.
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
threads=${2:-2}
sizes=${3:-64,96,224}
py=${SS_PYTHON:-/usr/bin/python3}
min=${MIN_TIME:-0.5}
repeat=${REPEAT:-1}
cpu=
[ "${CPU_TIME:-0}" = 1 ] && cpu=--cpu
exe=$build/bench/resnet_bench
[ -x "$exe" ] || { echo "run_resnet_bench: $exe not built (cmake --build $build --target resnet_bench)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
have_torch=1
"$py" -c "import torch, torchvision" 2>/dev/null || have_torch=0
# torch threads: intra-op OpenMP pool (set_num_threads) and its BLAS pool
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads

# each size REPEAT times (sizes interleaved); a figure is the best of its repeats
seq_sizes() {
    r=0
    while [ $r -lt "$repeat" ]; do echo "$sizes" | tr ',' ' '; r=$((r + 1)); done
}

run_pair() { # $1 = label, rest = env assignment or -u VAR
    label=$1; shift
    # C and PyTorch alternate size by size, so load from other processes hits both alike
    : > "$tmp/c.$label"
    : > "$tmp/t.$label"
    for s in $(seq_sizes); do
        env "$@" "$exe" --threads "$threads" --sizes "$s" --min-time "$min" $cpu >> "$tmp/c.$label"
        if [ $have_torch = 1 ]; then
            env "$@" "$py" "$here/resnet_bench_torch.py" --threads "$threads" --sizes "$s" \
                --min-time "$min" $cpu >> "$tmp/t.$label"
        fi
    done
    awk -v label="$label" '
        FNR == NR { if (($1 == "infer" || $1 == "train") && $3 > t[$1 " " $2]) t[$1 " " $2] = $3; next }
        $1 == "corename" { core = $2 } $1 == "threads" { thr = $2 }
        $1 == "sgemm_gflops" && $2 > peak { peak = $2 }  # best of the runs: least disturbed
        $1 == "infer" || $1 == "train" {
            k = $1 " " $2
            if (!(k in c)) order[++n] = k
            if ($3 > c[k]) { c[k] = $3; if ($1 == "infer") gf[$2] = $4 }
        }
        END {
            printf "\n== %s: OpenBLAS kernel %s, %d threads, cblas_sgemm peak %.1f GFLOP/s ==\n", label, core, thr, peak
            printf "%-18s %10s %12s %7s %8s\n", "ResNet-18 (b=32)", "C img/s", "torch img/s", "ratio", "target"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, p, " ")
                tgt = p[2] >= 224 ? "1.0x" : (p[1] == "infer" ? "2.0x" : "1.5x")
                if (k in t && t[k] > 0)
                    printf "%-18s %10.1f %12.1f %6.2fx %8s\n", p[1] " " p[2] " px", c[k], t[k], c[k] / t[k], tgt
                else
                    printf "%-18s %10.1f %12s %7s %8s\n", p[1] " " p[2] " px", c[k], "-", "-", tgt
            }
            for (i = 1; i <= n; i++) {
                split(order[i], p, " ")
                if (p[1] == "infer")
                    printf "inference %4d px: %.1f GFLOP/s (nominal direct-conv+fc FLOPs / time) = %.0f%% of the sgemm peak\n", p[2], gf[p[2]], 100 * gf[p[2]] / peak
            }
        }' "$tmp/t.$label" "$tmp/c.$label"
}

echo "slidestream ResNet-18 benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(getconf _NPROCESSORS_ONLN) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset})${cpu:+, CPU time}"
[ $have_torch = 1 ] || echo "(PyTorch not importable by $py: C figures only)"
run_pair "OPENBLAS_CORETYPE=Haswell" OPENBLAS_CORETYPE=Haswell
run_pair "OPENBLAS_CORETYPE unset" -u OPENBLAS_CORETYPE

[ "${MEMORY:-1}" = 0 ] && exit 0
echo
echo "== peak memory of one training step, batch 256, 96 px =="
env -u OPENBLAS_CORETYPE "$exe" --memory --threads "$threads" > "$tmp/mem.c"
crss=$(awk '$1 == "rss_mb" { print $2 }' "$tmp/mem.c")
model=$(awk '$1 == "model_mb" { print $2 }' "$tmp/mem.c")
trss=-
if [ $have_torch = 1 ]; then
    env -u OPENBLAS_CORETYPE "$py" "$here/resnet_bench_torch.py" --memory --threads "$threads" > "$tmp/mem.t"
    trss=$(awk '$1 == "rss_mb" { print $2 }' "$tmp/mem.t")
fi
echo "C: peak RSS $crss MB (model allocations $model MB); PyTorch: peak RSS $trss MB"
