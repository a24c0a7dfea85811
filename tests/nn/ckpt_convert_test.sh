#!/bin/sh
# nn.ckpt_convert: usage ckpt_convert_test.sh PYTHON ckpt_convert.py test_nn_resnet WORKDIR
# Skips (exit 77) only when torch/torchvision/h5py cannot be imported.
set -e
py=$1 conv=$2 exe=$3 dir=$4/convert
if ! "$py" -c "import torch, torchvision, h5py" >/dev/null 2>&1; then
    echo "SKIP: $py cannot import torch, torchvision and h5py"
    exit 77
fi
mkdir -p "$dir"
exec "$py" "$(dirname "$0")/ckpt_convert_check.py" "$conv" "$exe" "$dir"
