#!/usr/bin/python3
"""Convert ResNet checkpoints between PyTorch (.pth state_dict) and slidestream's HDF5 format.

slidestream's format (include/slidestream/nn_checkpoint.h): one root dataset per state_dict key,
named exactly as torchvision names it ("conv1.weight", "layer1.0.bn1.running_mean",
"bn1.num_batches_tracked" as an int64 scalar, "fc.weight", projection head "projector.0.weight"
... "projector.2.bias"), with root attributes arch ("resnet18" | "resnet34"), width_multiplier,
input_size, mean and std (RGB in [0, 1]) and, for encoders cut after layer3, truncate_after.

  to-h5  IN.pth OUT.h5 [--input-size N] [--mean R G B] [--std R G B]
      Accepts torchvision naming, a "module." (DataParallel) prefix, a dict wrapping the
      state_dict under "state_dict"/"model", and the SLAM-AGS reference naming: encoder.N.* (a
      torchvision resnet18 as nn.Sequential(*children()[:-1]): 0=conv1 1=bn1 4..7=layer1..4)
      and projector.fc.N.*. Architecture, width and truncation are read off the tensors.
  to-pth IN.h5 OUT.pth [--reference]
      Writes a torchvision-named state_dict (plus projector.N.* when present). With --reference,
      writes the SLAM-AGS reference Model's naming instead (encoder.N.*, projector.fc.N.*), exactly
      the keys of its Model().state_dict(), so that load_state_dict(strict=True) takes it; refuses,
      naming every reason, a checkpoint that Model cannot hold (only an untruncated width-1
      resnet18 with a 512-512-512 projection head and no fc classifier fits).
  info   FILE
      Prints the attributes and tensors of either kind of file.

Run with Debian's /usr/bin/python3 (torch, h5py).
"""
import argparse
import math
import os
import re
import sys

import h5py
import numpy as np
import torch

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
SLAM_ENCODER = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
BLOCK_KEY = re.compile(r"^(layer[1-4])\.(\d+)\.(conv[12]|bn[12]|downsample\.[01])\."
                       r"(weight|bias|running_mean|running_var|num_batches_tracked)$")
STEM_KEY = re.compile(r"^(conv1\.weight|bn1\.(weight|bias|running_mean|running_var|"
                      r"num_batches_tracked))$")
HEAD_KEY = re.compile(r"^(fc|projector\.[02])\.(weight|bias)$")


class ConvertError(Exception):
    pass


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, dict):
        for k in ("state_dict", "model", "model_state_dict"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConvertError(f"{path}: not a state_dict of tensors")
    return obj


def to_torchvision_names(sd):
    """Map every key to torchvision naming; raise on keys that fit no known scheme."""
    out, unknown = {}, []
    for key, val in sd.items():
        k = key[len("module."):] if key.startswith("module.") else key
        m = re.match(r"^encoder\.(\d+)\.(.*)$", k)
        if m:
            if m.group(1) not in SLAM_ENCODER:
                unknown.append(key)
                continue
            k = f"{SLAM_ENCODER[m.group(1)]}.{m.group(2)}"
        m = re.match(r"^projector\.fc\.(\d+)\.(.*)$", k)
        if m:
            k = f"projector.{m.group(1)}.{m.group(2)}"
        if not (STEM_KEY.match(k) or BLOCK_KEY.match(k) or HEAD_KEY.match(k)):
            unknown.append(key)
            continue
        if k in out:
            raise ConvertError(f"two tensors map to {k}")
        out[k] = val
    if unknown:
        raise ConvertError("not a torchvision ResNet-18/34 tensor (or SLAM-AGS naming): " +
                           ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else ""))
    if "conv1.weight" not in out:
        raise ConvertError("conv1.weight is missing")
    return out


def describe(sd):
    """(arch, width_multiplier, truncate_after) read off the tensors."""
    blocks = {}
    for k in sd:
        m = BLOCK_KEY.match(k)
        if m:
            blocks.setdefault(m.group(1), set()).add(int(m.group(2)))
    counts = [len(blocks.get(f"layer{i}", ())) for i in range(1, 5)]
    if counts == [2, 2, 2, 2] or counts == [2, 2, 2, 0]:
        arch = "resnet18"
    elif counts == [3, 4, 6, 3] or counts == [3, 4, 6, 0]:
        arch = "resnet34"
    else:
        raise ConvertError(f"blocks per layer {counts} match neither resnet18 nor resnet34")
    # The C side builds lround(64 * m * 2^i) channels (at least 1) for the stem (i = 0) and
    # layer i+1. Each observed width confines m to an interval; take the shortest decimal in
    # their intersection, nearest its middle (a .pth does not carry the multiplier itself).
    layers = [i for i in range(4) if counts[i]]
    widths = [(0, sd["conv1.weight"].shape[0])] + \
        [(i, sd[f"layer{i + 1}.0.conv1.weight"].shape[0]) for i in layers]
    lo, hi = 0.0, math.inf
    for i, c in widths:
        scale = 64.0 * 2 ** i
        lo = max(lo, (c - 0.5) / scale if c > 1 else 0.0)
        hi = min(hi, (c + 0.5) / scale)
    if not lo < hi:
        raise ConvertError(f"channel widths {[c for _, c in widths]} follow no single width "
                           "multiplier")
    mid = width = (lo + hi) / 2
    for digits in range(0, 8):
        step = 10.0 ** -digits
        first, last = math.ceil(lo / step), math.ceil(hi / step) - 1
        cands = [round(k * step, digits) for k in range(first, last + 1) if k > 0]
        if cands:
            width = min(cands, key=lambda v: abs(v - mid))
            break
    truncate = "layer3" if counts[3] == 0 else None
    return arch, width, truncate


def write_h5(sd, path, input_size, mean, std):
    arch, width, truncate = describe(sd)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for k, v in sd.items():
            a = v.detach().cpu().numpy()
            if k.endswith("num_batches_tracked"):
                a = np.asarray(a, dtype=np.int64).reshape(())
            else:
                a = a.astype(np.float32)
            f[k] = a
        f.attrs["arch"] = arch
        f.attrs["width_multiplier"] = float(width)
        f.attrs["input_size"] = int(input_size)
        f.attrs["mean"] = np.asarray(mean, dtype=np.float64)
        f.attrs["std"] = np.asarray(std, dtype=np.float64)
        if truncate:
            f.attrs["truncate_after"] = truncate
    os.replace(tmp, path)
    return arch, width, truncate


def read_h5(path):
    sd = {}
    with h5py.File(path, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        for k, d in f.items():
            if not isinstance(d, h5py.Dataset):
                raise ConvertError(f"{path}: {k} is not a dataset")
            a = d[()]
            sd[k] = torch.tensor(np.int64(a)) if k.endswith("num_batches_tracked") else \
                torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    to_torchvision_names(sd)  # validates the names
    return sd, attrs


def _attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


# torchvision's name -> the reference Model's: the inverse of the SLAM_ENCODER renaming.
TV_TO_SLAM = {v: k for k, v in SLAM_ENCODER.items()}


def reference_shapes():
    """The reference Model's state_dict keys (in its order) and shapes: torchvision's resnet18
    cut before fc, then Linear(512, 512)-ReLU-Linear(512, 512). Spelled out here so that the
    converter needs no torchvision and the refusal can name what is missing."""
    bn = lambda c: [("weight", (c,)), ("bias", (c,)), ("running_mean", (c,)),
                    ("running_var", (c,)), ("num_batches_tracked", ())]
    keys = [("conv1.weight", (64, 3, 7, 7))] + [(f"bn1.{n}", s) for n, s in bn(64)]
    cin = 64
    for layer, c in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p, i = f"layer{layer}.{b}", cin if b == 0 else c
            keys.append((f"{p}.conv1.weight", (c, i, 3, 3)))
            keys += [(f"{p}.bn1.{n}", s) for n, s in bn(c)]
            keys.append((f"{p}.conv2.weight", (c, c, 3, 3)))
            keys += [(f"{p}.bn2.{n}", s) for n, s in bn(c)]
            if b == 0 and i != c:
                keys.append((f"{p}.downsample.0.weight", (c, i, 1, 1)))
                keys += [(f"{p}.downsample.1.{n}", s) for n, s in bn(c)]
        cin = c
    keys += [("projector.0.weight", (512, 512)), ("projector.0.bias", (512,)),
             ("projector.2.weight", (512, 512)), ("projector.2.bias", (512,))]
    return keys


def to_reference_names(sd, attrs):
    """A torchvision-named state_dict in the reference Model's naming, or ConvertError listing
    every reason the checkpoint does not fit that Model."""
    why = []
    arch = _attr_str(attrs.get("arch", "?"))
    try:
        seen_arch, width, truncate = describe(sd)
    except ConvertError as e:
        seen_arch, width, truncate = arch, attrs.get("width_multiplier", 1.0), None
        why.append(str(e))
    if arch != "resnet18" or seen_arch != "resnet18":
        why.append(f"architecture is {arch if arch != 'resnet18' else seen_arch}, the reference "
                   "encoder is resnet18")
    if "truncate_after" in attrs or truncate:
        why.append("encoder is truncated after "
                   f"{_attr_str(attrs.get('truncate_after', truncate))} (no layer4)")
    w = float(attrs.get("width_multiplier", width))
    if w != 1.0 or width != 1.0:
        why.append(f"width multiplier is {w if w != 1.0 else width:g}, the reference's is 1")
    if "fc.weight" in sd:
        why.append(f"has an fc classifier (fc.weight {tuple(sd['fc.weight'].shape)}), the "
                   "reference Model has none")
    if "projector.0.weight" not in sd:
        why.append("has no projection head (projector.*), the reference Model has "
                   "Linear(512, 512)-ReLU-Linear(512, 512)")
    elif not why:
        dims = (sd["projector.0.weight"].shape[1], sd["projector.0.weight"].shape[0],
                sd["projector.2.weight"].shape[0])
        if dims != (512, 512, 512):
            why.append("projection head is {}-{}-{}, the reference's is 512-512-512".format(*dims))
    if not why:
        shapes = reference_shapes()
        missing = [k for k, _ in shapes if k not in sd]
        extra = sorted(set(sd) - {k for k, _ in shapes})
        wrong = [f"{k} {tuple(sd[k].shape)} (want {s})" for k, s in shapes
                 if k in sd and tuple(sd[k].shape) != s]
        if missing:
            why.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
        if extra:
            why.append("unexpected " + ", ".join(extra[:6]) + (" ..." if len(extra) > 6 else ""))
        if wrong:
            why.append("shapes differ: " + ", ".join(wrong[:4]))
    if why:
        raise ConvertError("cannot write the SLAM-AGS reference Model's naming: " + "; ".join(why))
    out = {}
    for k, _ in reference_shapes():
        head, rest = k.split(".", 1)
        if head == "projector":
            out[f"projector.fc.{rest}"] = sd[k]
        else:
            out[f"encoder.{TV_TO_SLAM[head]}.{rest}"] = sd[k]
    return out


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("to-h5", help=".pth state_dict -> slidestream HDF5")
    a.add_argument("src")
    a.add_argument("dst")
    a.add_argument("--input-size", type=int, default=224)
    a.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN)
    a.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD)
    b = sub.add_parser("to-pth", help="slidestream HDF5 -> torchvision-named .pth")
    b.add_argument("src")
    b.add_argument("dst")
    b.add_argument("--reference", action="store_true",
                   help="SLAM-AGS reference Model naming (encoder.N.*, projector.fc.N.*)")
    c = sub.add_parser("info", help="print a checkpoint's attributes and tensors")
    c.add_argument("src")
    args = p.parse_args(argv)
    try:
        if args.cmd == "to-h5":
            sd = to_torchvision_names(load_state_dict(args.src))
            arch, width, trunc = write_h5(sd, args.dst, args.input_size, args.mean, args.std)
            print(f"{args.src} -> {args.dst}: {arch}, width {width:g}"
                  f"{', truncated after ' + trunc if trunc else ''}, {len(sd)} tensors")
        elif args.cmd == "to-pth":
            sd, attrs = read_h5(args.src)
            if args.reference:
                sd = to_reference_names(sd, attrs)
            # under a temporary name, so that a failed save leaves no partial .pth behind
            tmp = args.dst + ".tmp"
            try:
                torch.save(sd, tmp)
                os.replace(tmp, args.dst)
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
            print(f"{args.src} -> {args.dst}: {_attr_str(attrs.get('arch'))}, {len(sd)} tensors"
                  f"{' (SLAM-AGS reference naming)' if args.reference else ''}")
        else:
            if args.src.endswith(".h5"):
                sd, attrs = read_h5(args.src)
                for k, v in attrs.items():
                    print(f"@{k} = {v}")
            else:
                sd = to_torchvision_names(load_state_dict(args.src))
            for k, v in sd.items():
                print(f"{k} {tuple(v.shape)} {v.dtype}")
    except (ConvertError, OSError, KeyError) as e:
        print(f"ckpt_convert: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
