#!/bin/sh
# nn.ckpt_convert: usage ckpt_convert_test.sh PYTHON ckpt_convert.py test_nn_resnet WORKDIR
# The slidestream binary (checkpoints for the reference-format cases) comes from $SLIDESTREAM,
# which ss_add_test sets for every test.
# Skips (exit 77) only when torch/torchvision/h5py cannot be imported.
set -e
py=$1 conv=$2 exe=$3 dir=$4/convert
if ! "$py" -c "import torch, torchvision, h5py" >/dev/null 2>&1; then
    echo "SKIP: $py cannot import torch, torchvision and h5py"
    exit 77
fi
if [ ! -x "${SLIDESTREAM:-}" ]; then
    echo "FAIL: \$SLIDESTREAM ('${SLIDESTREAM:-}') is not an executable; build the slidestream target"
    exit 1
fi
mkdir -p "$dir"
exec "$py" "$(dirname "$0")/ckpt_convert_check.py" "$conv" "$exe" "$dir" "$SLIDESTREAM"
