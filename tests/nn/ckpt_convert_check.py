#!/usr/bin/python3
"""nn.ckpt_convert: .pth -> HDF5 -> (C load + save) -> .pth round trips through
scripts/ckpt_convert.py and the C loader, for torchvision naming (resnet18 with fc, resnet34
truncated after layer3) and the SLAM-AGS naming (encoder.N.* + projector.fc.N.*). Every tensor
must come back bit-identical, and the result must load into torchvision's resnet.
Then the other direction for the reference: a checkpoint made by `slidestream checkpoint init`
-> `to-pth --reference` -> strict load into the reference Model -> its state_dict -> `to-h5`
gives every tensor back bit-identical, and checkpoints that Model cannot hold are refused with
the reason named. usage: ckpt_convert_check.py ckpt_convert.py test_nn_resnet WORKDIR SLIDESTREAM"""
import contextlib
import importlib.util
import io
import os
import subprocess
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torchvision

conv, resave, work, slidestream = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
py = sys.executable
fails = 0


# The converter runs in this process (one torch import instead of one per conversion); its
# command line is exercised by the refusal case at the end.
spec = importlib.util.spec_from_file_location("ckpt_convert", conv)
ckpt_convert = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ckpt_convert)


def run(*cmd):
    if cmd[0] == py:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = ckpt_convert.main(list(cmd[2:]))
        if rc:
            raise SystemExit(f"FAIL: ckpt_convert {' '.join(cmd[2:])}")
        return out.getvalue()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"FAIL: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r.stdout


def roundtrip(name, sd, expect_keys):
    global fails
    src, h5, h5b, back = (f"{work}/{name}{s}" for s in (".pth", ".h5", "_c.h5", "_back.pth"))
    torch.save(sd, src)
    print(run(py, conv, "to-h5", src, h5, "--input-size", "96").strip())
    print(run(resave, "resave", h5, h5b).strip())
    print(run(py, conv, "to-pth", h5b, back).strip())
    got = torch.load(back)
    if set(got) != set(expect_keys):
        print(f"FAIL {name}: keys differ: {sorted(set(got) ^ set(expect_keys))[:6]}")
        fails += 1
        return got
    for k, v in zip(expect_keys, sd.values()):
        g = got[k]
        if g.shape != v.shape or g.dtype != v.dtype or not torch.equal(g, v):
            print(f"FAIL {name}: {k} differs ({g.shape} {g.dtype} vs {v.shape} {v.dtype})")
            fails += 1
    print(f"{name}: {len(got)} tensors round-tripped")
    return got


torch.manual_seed(5)
# torchvision resnet18 with a 7-class fc; perturb BN stats so they are not defaults
m = torchvision.models.resnet18(num_classes=7)
for mod in m.modules():
    if isinstance(mod, nn.BatchNorm2d):
        mod.running_mean.normal_()
        mod.num_batches_tracked.fill_(11)
sd = m.state_dict()
got = roundtrip("tv18", sd, list(sd))
torchvision.models.resnet18(num_classes=7).load_state_dict(got)

# resnet34 truncated after layer3 (E2E encoder), no fc
m = torchvision.models.resnet34()
sd = {k: v for k, v in m.state_dict().items() if not k.startswith(("layer4", "fc"))}
roundtrip("tv34_l3", sd, list(sd))


# SLAM-AGS reference Model: encoder = Sequential(children[:-1]), projector.fc = Lin-ReLU-Lin
class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))


class SlamModel(nn.Module):
    def __init__(self):
        super().__init__()
        r = torchvision.models.resnet18()
        self.encoder = nn.Sequential(*list(r.children())[:-1])
        self.projector = Head()


sm = SlamModel()
sd = sm.state_dict()
tv = torchvision.models.resnet18()
tv.projector = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
expect = [k for k in tv.state_dict() if not k.startswith("fc.")]
got = roundtrip("slam_ags", sd, expect)
tv.load_state_dict(got, strict=False)
# the converted encoder computes what the SLAM-AGS encoder computes
tv.eval(), sm.eval()
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    a = sm.projector.fc(sm.encoder(x).flatten(1))
    tv.fc = nn.Identity()
    b = tv.projector(tv(x))
if not torch.allclose(a, b, atol=1e-6):
    print("FAIL slam_ags: converted model computes something else")
    fails += 1

# a width-scaled model made by the C side: h5 -> pth -> h5 -> C -> pth keeps every tensor
for w in ("0.125", "0.3"):
    h5 = f"{work}/w{w}.h5"
    run(resave, "make", h5, w)
    run(py, conv, "to-pth", h5, f"{work}/w{w}.pth")
    sd = torch.load(f"{work}/w{w}.pth")
    roundtrip(f"width{w}", sd, list(sd))

# --- slidestream HDF5 -> reference .pth -> strict load into the reference Model -> HDF5 ---
def init(name, *opts):
    path = f"{work}/{name}.h5"
    if os.path.exists(path):
        os.remove(path)
    print(run(slidestream, "checkpoint", "init", "--out", path, "--input", "64", *opts).strip())
    return path


def h5_tensors(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}, {k: f.attrs[k] for k in f.attrs}


ck = init("ref_src", "--width", "1", "--projection", "512,512", "--seed", "3")
# BN statistics as a trained model has them, so a swapped mean/var would show
with h5py.File(ck, "r+") as f:
    rng = np.random.default_rng(1)
    for k in f:
        if k.endswith(("running_mean", "running_var")):
            f[k][...] = rng.uniform(0.5, 2.0, f[k].shape).astype(np.float32)
        elif k.endswith("num_batches_tracked"):
            f[k][()] = 17
ref_pth = f"{work}/ref.pth"
print(run(py, conv, "to-pth", ck, ref_pth, "--reference").strip())
got = torch.load(ref_pth)
ref = SlamModel()
want = ref.state_dict()
if list(got) != list(want):
    print(f"FAIL reference: keys differ from Model().state_dict(): "
          f"{sorted(set(got) ^ set(want))[:6]} (or their order)")
    fails += 1
ref.load_state_dict(got, strict=True)
for k, v in ref.state_dict().items():
    if v.dtype != want[k].dtype or v.shape != want[k].shape:
        print(f"FAIL reference: {k} is {v.dtype} {tuple(v.shape)}, Model has {want[k].dtype} "
              f"{tuple(want[k].shape)}")
        fails += 1
# what the reference itself would save, back to slidestream's format
torch.save(ref.state_dict(), f"{work}/ref_saved.pth")
back = f"{work}/ref_back.h5"
print(run(py, conv, "to-h5", f"{work}/ref_saved.pth", back, "--input-size", "64").strip())
a, a_attrs = h5_tensors(ck)
b, b_attrs = h5_tensors(back)
if set(a) != set(b):
    print(f"FAIL reference round trip: datasets differ: {sorted(set(a) ^ set(b))[:6]}")
    fails += 1
for k in sorted(set(a) & set(b)):
    if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes():
        print(f"FAIL reference round trip: {k} differs ({a[k].dtype} {a[k].shape} vs "
              f"{b[k].dtype} {b[k].shape})")
        fails += 1
for k in ("arch", "width_multiplier", "input_size"):
    if str(a_attrs.get(k)) != str(b_attrs.get(k)):
        print(f"FAIL reference round trip: attribute {k} {a_attrs.get(k)} -> {b_attrs.get(k)}")
        fails += 1
print(f"reference: {len(got)} tensors through Model.load_state_dict(strict=True) and back")
print(run(resave, "resave", back, f"{work}/ref_back_c.h5").strip())


def refused(name, h5, *expect):
    """to-pth --reference must fail, name every reason in `expect`, and leave no output."""
    global fails
    out = f"{work}/{name}.pth"
    if os.path.exists(out):
        os.remove(out)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = ckpt_convert.main(["to-pth", h5, out, "--reference"])
    msg = err.getvalue().strip()
    if rc == 0 or any(e not in msg for e in expect) or os.path.exists(out) or \
            os.path.exists(out + ".tmp"):
        print(f"FAIL {name}: want a refusal naming {expect}, got rc {rc}: {msg}")
        fails += 1
    else:
        print(f"{name}: refused: {msg}")


refused("ref_noproj", init("ref_noproj"), "no projection head")
refused("ref_r34", init("ref_r34", "--arch", "resnet34", "--projection", "512,512"),
        "architecture is resnet34")
refused("ref_trunc", init("ref_trunc", "--truncate", "layer3", "--projection", "512,512"),
        "truncated after layer3")
refused("ref_w05", init("ref_w05", "--width", "0.5", "--projection", "512,512"),
        "width multiplier is 0.5")
refused("ref_p128", init("ref_p128", "--projection", "512,128"), "projection head is 512-512-128")
# an fc classifier next to the head (added with h5py: init has no classifier option)
fc = f"{work}/ref_fc.h5"
with h5py.File(ck, "r") as f, h5py.File(fc, "w") as g:
    for k in f:
        f.copy(k, g)
    for k in f.attrs:
        g.attrs[k] = f.attrs[k]
    g["fc.weight"] = np.zeros((2, 512), np.float32)
    g["fc.bias"] = np.zeros(2, np.float32)
refused("ref_fc", fc, "has an fc classifier")
# several reasons at once are all named
refused("ref_many", f"{work}/w0.125.h5", "fc classifier", "no projection head",
        "width multiplier is 0.125")

# a ResNet-50 key is refused with a clear message
bad = {"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv3.weight": torch.zeros(1)}
torch.save(bad, f"{work}/bad.pth")
r = subprocess.run([py, conv, "to-h5", f"{work}/bad.pth", f"{work}/bad.h5"], capture_output=True,
                   text=True)
if r.returncode == 0 or "layer1.0.conv3.weight" not in r.stderr:
    print(f"FAIL: a resnet50 key was not refused by name: {r.stderr}")
    fails += 1
sys.exit(1 if fails else 0)
