"""Where a train step's convolution time goes: forward, input gradient and weight gradient, JAX vs PyTorch.

    python benchmarks/conv_parts.py [--shape 9,74,74,128] [--kernel 3] [--repeats 5]
    python benchmarks/conv_parts.py --sweep [--repeats 5]

One 3x3 convolution of SRFeat's generator at the authors' size (batch 9, 74x74, 128 -> 128 channels) by
default. JAX: `lax.conv_general_dilated` and the two halves of its VJP, each jitted alone; the weight
gradient `common.nn.conv` uses on CPU under YNNPACK's convolutions (`common.nn.conv.weight_gradient`, a chunked
im2col matmul; under Eigen's, the default that `common` sets, XLA's own is faster and used); and three
earlier rewrites of it (per-tap matmuls, a forward convolution with the batch and feature axes
exchanged, per-tap matmuls over contiguous slices of the row-flattened padded batch). Every rewrite is
checked against `jax.grad`. PyTorch (when installed): eager, channels-last, the forward and the forward +
both gradients. Medians, GFLOP/s.

``--sweep`` times XLA's weight gradient against `common.nn.conv.weight_gradient` on the layer shapes of the
benchmarked networks (SRFeat's generator, VGG-16 at DMENet's 240x240 crops) and prints the ratio: the
evidence behind `common.nn.conv`'s size thresholds. Importing `common` puts XLA:CPU's convolutions in Eigen (jaxlib
0.10); for YNNPACK's figures, run with
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce,individual_convolution``.
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.nn.conv import weight_gradient  # noqa: E402
from common.train import hostmem, xla  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")


def median_time(f, *args, repeats=5) -> float:
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="9,74,74,128", help="N,H,W,C (input and output channels C)")
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sweep", action="store_true", help="XLA vs im2col weight gradient over the networks' shapes")
    a = p.parse_args()
    if a.sweep:
        return sweep(a.repeats)
    n, h, w, c = map(int, a.shape.split(","))
    k = a.kernel
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((n, h, w, c), np.float32))
    kern = jnp.asarray(rng.random((k, k, c, c), np.float32) * 0.01)
    g = jnp.asarray(rng.random((n, h, w, c), np.float32))
    pad = k // 2

    def conv(x, kern):
        return lax.conv_general_dilated(x, kern, (1, 1), [(pad, pad)] * 2, dimension_numbers=DN)

    def dw_taps(x, g):  # Σ over the k² shifted inputs of x_shiftedᵀ @ g
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        gf = g.reshape(-1, c)
        taps = [xp[:, i : i + h, j : j + w].reshape(-1, c).T @ gf for i in range(k) for j in range(k)]
        return jnp.stack(taps).reshape(k, k, c, c)

    def dw_swapped(x, g):  # a forward convolution: batch <-> features exchanged, g as the kernel
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        out = lax.conv_general_dilated(
            xp.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1), "VALID", dimension_numbers=DN
        )
        return out.transpose(1, 2, 0, 3)

    def dw_flat(x, g):  # per-tap matmuls; each shifted input is one contiguous slice of the flattened batch
        wp, rows = w + 2 * pad, (h + 2 * pad) * (w + 2 * pad)
        xf = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))).reshape(-1, c)
        xf = jnp.pad(xf, ((0, (k - 1) * (wp + 1)), (0, 0)))
        # g on the padded grid, zero outside the h x w block, so wrap-around rows and columns add nothing
        gf = jnp.pad(g, ((0, 0), (0, 2 * pad), (0, 2 * pad), (0, 0))).reshape(-1, c)
        offsets = [i * wp + j for i in range(k) for j in range(k)]
        return jnp.stack([xf[o : o + n * rows].T @ gf for o in offsets]).reshape(k, k, c, c)

    flops = 2 * n * h * w * c * c * k * k
    fns = {
        "forward": (jax.jit(conv), (x, kern)),
        "input grad (XLA)": (jax.jit(lambda x, kern, g: jax.vjp(lambda x: conv(x, kern), x)[1](g)[0]), (x, kern, g)),
        "weight grad (XLA)": (jax.jit(lambda x, kern, g: jax.vjp(lambda q: conv(x, q), kern)[1](g)[0]), (x, kern, g)),
        "weight grad, im2col (common.nn.conv)": (
            jax.jit(lambda x, g: weight_gradient(x, g, (k, k), ((pad, pad), (pad, pad)))),
            (x, g),
        ),
        "weight grad, per-tap matmuls": (jax.jit(dw_taps), (x, g)),
        "weight grad, swapped forward conv": (jax.jit(dw_swapped), (x, g)),
        "weight grad, contiguous-slice taps": (jax.jit(dw_flat), (x, g)),
    }
    ref = fns["weight grad (XLA)"][0](x, kern, g)
    print(f"conv {k}x{k}, input {n}x{h}x{w}x{c}, {flops / 1e9:.1f} GFLOP per pass; {jax.devices()}")
    for name, (f, args) in fns.items():
        s = median_time(f, *args, repeats=a.repeats)
        note = ""
        if name.startswith("weight grad,"):
            err = float(jnp.max(jnp.abs(f(*args) - ref)) / jnp.max(jnp.abs(ref)))
            note = f"  (max rel. diff to jax.grad {err:.1e})"
        print(f"jax   {name:<34} {s * 1e3:8.1f} ms {flops / s / 1e9:7.1f} GFLOP/s{note}")
    try:
        import torch
    except ImportError:
        print("torch not installed (pip install -e '.[torch]'): no PyTorch rows")
        return
    xt = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    xt.requires_grad_()
    layer = torch.nn.Conv2d(c, c, k, padding=pad, bias=False).to(memory_format=torch.channels_last)
    gt = torch.ones_like(layer(xt))

    def fwd():
        with torch.no_grad():
            return layer(xt)

    def fwd_bwd():
        return torch.autograd.grad(layer(xt), [xt, layer.weight], gt)

    for name, f, passes in (("forward", fwd, 1), ("forward + both gradients", fwd_bwd, 3)):
        f()
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        s = float(np.median(ts))
        print(
            f"torch {name:<34} {s * 1e3:8.1f} ms {passes * flops / s / 1e9:7.1f} GFLOP/s "
            f"({torch.get_num_threads()} threads)"
        )


# (N, H, W, C_in, C_out, kernel) of the benchmarked steps' stride-1 convolutions
SWEEP = (
    ("SRFeat head 9x9", (9, 74, 74, 3, 128, 9)),
    ("SRFeat block 3x3", (9, 74, 74, 128, 128, 3)),
    ("SRFeat skip 1x1", (9, 74, 74, 128, 128, 1)),
    ("SRFeat up 3x3 (x2)", (9, 148, 148, 128, 512, 3)),
    ("VGG conv1_1", (3, 240, 240, 3, 64, 3)),
    ("VGG conv1_2", (3, 240, 240, 64, 64, 3)),
    ("VGG conv2_2", (3, 120, 120, 128, 128, 3)),
    ("VGG conv3_3", (3, 60, 60, 256, 256, 3)),
    ("VGG conv4_3", (3, 30, 30, 512, 512, 3)),
    ("VGG conv5_3", (3, 15, 15, 512, 512, 3)),
)


def sweep(repeats: int):
    rng = np.random.default_rng(0)
    print(f"{'layer':<20} {'N,H,W,Cin->Cout,k':<22} {'XLA ms':>8} {'im2col ms':>10} {'XLA/im2col':>11} {'diff':>9}")
    for name, (n, h, w, ci, co, k) in SWEEP:
        x = jnp.asarray(rng.random((n, h, w, ci), np.float32))
        kern = jnp.asarray(rng.random((k, k, ci, co), np.float32))
        g = jnp.asarray(rng.random((n, h, w, co), np.float32))
        lo, hi = (k - 1) // 2, k // 2  # 'SAME'
        pads = ((lo, hi), (lo, hi))

        def xla(x, kern, g, pads=pads):
            def conv(q):
                return lax.conv_general_dilated(x, q, (1, 1), pads, dimension_numbers=DN)

            return jax.vjp(conv, kern)[1](g)[0]

        fx = jax.jit(xla)
        fi = jax.jit(lambda x, g, k=k, pads=pads: weight_gradient(x, g, (k, k), pads))
        ref = fx(x, kern, g)
        err = float(jnp.max(jnp.abs(fi(x, g) - ref)) / jnp.max(jnp.abs(ref)))
        tx, ti = median_time(fx, x, kern, g, repeats=repeats), median_time(fi, x, g, repeats=repeats)
        shape = f"{n},{h},{w},{ci}->{co},{k}"
        print(f"{name:<20} {shape:<22} {tx * 1e3:8.1f} {ti * 1e3:10.1f} {tx / ti:11.2f} {err:9.1e}", flush=True)


if __name__ == "__main__":
    xla.set_cpu_flags()
    hostmem.reexec_with_tunables()
    main()
