#!/usr/bin/env bash
# slidestream set-up for a fresh Debian 12 machine: installs the system packages listed in
# .ci/packages.txt, builds, and then either runs the main job (demo) or the whole test suite
# (test). Idempotent: installed packages and existing builds are reused.
#
#   bash .ci/setup.sh demo    install, build, run pipelines/demo.conf
#   bash .ci/setup.sh test    install, build (normal, ASan+UBSan, fuzz), run every ctest suite
set -euo pipefail
mode=${1:-}
case "$mode" in demo|test|build) ;; *) echo "usage: bash .ci/setup.sh demo|test|build" >&2; exit 2;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)

# --- packages --------------------------------------------------------------------------------
mapfile -t pkgs < <(grep -v '^\s*#' .ci/packages.txt | sed '/^\s*$/d')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- build -----------------------------------------------------------------------------------
configure() { # dir, extra cmake args...
  local dir=$1; shift
  cmake -S "$root" -B "$root/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" > "$root/$dir.configure.log" 2>&1 \
    || { cat "$root/$dir.configure.log"; return 1; }
}
configure build
cmake --build build -j"$jobs"

if [ "$mode" = demo ]; then
  out="$root/runs/demo"
  rm -rf "$out"
  ./build/stages/slidestream run pipelines/demo.conf rundir="runs/demo"
  echo
  echo "demo output in $out:"
  echo "  train/curves.svg          the SLAM-AGS pretraining curves (losses, gradient cosine, norms)"
  echo "  train/encoder.h5          the encoder trained from the six training slides' labels"
  echo "  cache/<slide>.h5          every slide's cell embeddings (CLAM/TRIDENT-style HDF5)"
  echo "  mil/train.svg, train.csv  the ABMIL aggregator's training and validation curves"
  echo "  predictions/bags.csv      the two test slides' probabilities and predictions:"
  sed 's/^/                              /' "$out/predictions/bags.csv"
  echo "  predictions/heatmaps/     attention over each test slide's thumbnail (PNG)"
  echo "  predictions/gallery/      each test slide's 16 most attended cells with their scores"
  echo "  predictions/geojson/      each cell with its attention, for QuPath"
  echo "  gallery-abnormal.png, overlay-abnormal.png, cells-abnormal.geojson: detected cells"
  echo "  (a short run on eight generated slides: it shows the system working end to end, not a"
  echo "   validated diagnosis; \`slidestream study\` runs the witness-rate study)"
  exit 0
fi
[ "$mode" = build ] && exit 0

# --- tests -----------------------------------------------------------------------------------
status=0
echo "== test suite (release build) =="
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 900 || status=1

echo "== test suite (AddressSanitizer + UndefinedBehaviorSanitizer build) =="
configure build-asan -DSS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DSS_NATIVE=OFF
cmake --build build-asan -j"$jobs"
ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE "fuzz|nosan" --timeout 1800 || status=1

echo "== decoder fuzzing (clang libFuzzer, bounded) =="
CC=clang CXX=clang++ configure build-fuzz -DSS_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug -DSS_NATIVE=OFF
cmake --build build-fuzz -j"$jobs" --target fuzz_wire
ctest --test-dir build-fuzz --output-on-failure -L fuzz --timeout 600 || status=1

exit $status
