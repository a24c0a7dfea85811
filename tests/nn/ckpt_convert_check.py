#!/usr/bin/python3
"""nn.ckpt_convert: .pth -> HDF5 -> (C load + save) -> .pth round trips through
scripts/ckpt_convert.py and the C loader, for torchvision naming (resnet18 with fc, resnet34
truncated after layer3) and the SLAM-AGS naming (encoder.N.* + projector.fc.N.*). Every tensor
must come back bit-identical, and the result must load into torchvision's resnet."""
import contextlib
import importlib.util
import io
import subprocess
import sys

import torch
import torch.nn as nn
import torchvision

conv, resave, work = sys.argv[1], sys.argv[2], sys.argv[3]
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

# a ResNet-50 key is refused with a clear message
bad = {"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv3.weight": torch.zeros(1)}
torch.save(bad, f"{work}/bad.pth")
r = subprocess.run([py, conv, "to-h5", f"{work}/bad.pth", f"{work}/bad.h5"], capture_output=True,
                   text=True)
if r.returncode == 0 or "layer1.0.conv3.weight" not in r.stderr:
    print(f"FAIL: a resnet50 key was not refused by name: {r.stderr}")
    fails += 1
sys.exit(1 if fails else 0)
