#!/usr/bin/env python3
"""PyTorch parity of the NN layer kernels: writes inputs and PyTorch's outputs/gradients for each
layer as raw little-endian float32 files into a temporary directory, then runs the C checker
(test_nn_layers_torch DIR), whose exit code is the verdict. Exits 77 (skip) without torch."""
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch not importable with", sys.executable, "- skipping")
    sys.exit(77)


def main():
    if len(sys.argv) != 2:
        print("usage: torch_layers.py PATH/test_nn_layers_torch", file=sys.stderr)
        return 2
    checker = sys.argv[1]
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="ss_nn_torch_") as d:
        def save(name, t):
            t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(
                os.path.join(d, name + ".f32"))

        def leaf(*shape, lo=-1.0, hi=1.0):
            return (torch.rand(*shape) * (hi - lo) + lo).requires_grad_(True)

        # conv2d: [2,3,11,9] * [5,3,3,3] stride 2 pad 1, bias
        x, w, b = leaf(2, 3, 11, 9), leaf(5, 3, 3, 3), leaf(5)
        y = F.conv2d(x, w, b, stride=2, padding=1)
        dy = torch.rand_like(y) * 2 - 1
        y.backward(dy)
        for n, t in [("conv_x", x), ("conv_w", w), ("conv_b", b), ("conv_y", y), ("conv_dy", dy),
                     ("conv_dx", x.grad), ("conv_dw", w.grad), ("conv_db", b.grad)]:
            save(n, t)

        # batch norm 2d, training then eval: [4,3,5,6]
        bn = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        save("bn_gamma", bn.weight)
        save("bn_beta", bn.bias)
        save("bn_rm0", bn.running_mean)
        save("bn_rv0", bn.running_var)
        x = leaf(4, 3, 5, 6, lo=-2, hi=3)
        bn.train()
        y = bn(x)
        dy = torch.rand_like(y) * 2 - 1
        y.backward(dy)
        for n, t in [("bn_x", x), ("bn_y", y), ("bn_dy", dy), ("bn_dx", x.grad),
                     ("bn_dgamma", bn.weight.grad), ("bn_dbeta", bn.bias.grad),
                     ("bn_rm1", bn.running_mean), ("bn_rv1", bn.running_var)]:
            save(n, t)
        save("bn_nbt", bn.num_batches_tracked.to(torch.float32).reshape(1))
        bn.eval()
        x2 = torch.rand(4, 3, 5, 6) * 4 - 2
        save("bn_x2", x2)
        save("bn_y2", bn(x2))

        # max pool 3/2/1 on [2,3,9,8] with distinct values (no ties)
        x = torch.randperm(2 * 3 * 9 * 8).to(torch.float32).reshape(2, 3, 9, 8) * 0.01 - 2
        x.requires_grad_(True)
        y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        dy = torch.rand_like(y) * 2 - 1
        y.backward(dy)
        for n, t in [("mp_x", x), ("mp_y", y), ("mp_idx", idx), ("mp_dy", dy), ("mp_dx", x.grad)]:
            save(n, t)

        # global average pool [3,4,5,7]
        x = leaf(3, 4, 5, 7)
        y = F.adaptive_avg_pool2d(x, 1).flatten(1)
        dy = torch.rand_like(y) * 2 - 1
        y.backward(dy)
        for n, t in [("gap_x", x), ("gap_y", y), ("gap_dy", dy), ("gap_dx", x.grad)]:
            save(n, t)

        # linear [7,10] -> 4
        x, w, b = leaf(7, 10), leaf(4, 10), leaf(4)
        y = F.linear(x, w, b)
        dy = torch.rand_like(y) * 2 - 1
        y.backward(dy)
        for n, t in [("lin_x", x), ("lin_w", w), ("lin_b", b), ("lin_y", y), ("lin_dy", dy),
                     ("lin_dx", x.grad), ("lin_dw", w.grad), ("lin_db", b.grad)]:
            save(n, t)

        # layer norm over 12 on [5,12]
        x, w, b = leaf(5, 12, lo=-2, hi=3), leaf(12, lo=0.5, hi=1.5), leaf(12)
        y = F.layer_norm(x, (12,), w, b, eps=1e-5)
        dy = torch.rand_like(y) * 2 - 1
        y.backward(dy)
        for n, t in [("ln_x", x), ("ln_w", w), ("ln_b", b), ("ln_y", y), ("ln_dy", dy),
                     ("ln_dx", x.grad), ("ln_dw", w.grad), ("ln_db", b.grad)]:
            save(n, t)

        # element-wise and softmax on [6,9]
        for name, fn in [("gelu", F.gelu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
                         ("relu", F.relu), ("softmax", lambda t: F.softmax(t, dim=-1))]:
            x = leaf(6, 9, lo=-4, hi=4)
            y = fn(x)
            dy = torch.rand_like(y) * 2 - 1
            y.backward(dy)
            for n, t in [("x", x), ("y", y), ("dy", dy), ("dx", x.grad)]:
                save(name + "_" + n, t)

        return subprocess.call([checker, d])


if __name__ == "__main__":
    sys.exit(main())
