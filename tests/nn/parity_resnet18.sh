#!/bin/sh
# nn.parity_resnet18: write PyTorch reference tensors, then check the C ResNet-18 against them.
# usage: parity_resnet18.sh PYTHON make_reference.py test_nn_parity WORKDIR
# Skips (exit 77) only when torch/torchvision/h5py cannot be imported.
set -e
py=$1 script=$2 exe=$3 dir=$4/parity
if ! "$py" -c "import torch, torchvision, h5py" >/dev/null 2>&1; then
    echo "SKIP: $py cannot import torch, torchvision and h5py (install python3-torch," \
         "python3-torchvision, python3-h5py)"
    exit 77
fi
mkdir -p "$dir"
"$py" "$script" "$dir"
exec "$exe" "$dir"
