"""This project's train steps against the same networks in PyTorch, side by side in one process.

    pip install -e '.[torch]'
    python benchmarks/vs_torch.py [--steps 5] [--threads N] [--only srfeat_g,srfeat_gan,dmenet_b]
        [--conv_weight_grad auto,xla] [--settle 1] [--small]

Steps (the authors' sizes; ``--small`` shrinks every one for a quick look):

* ``srfeat_g``   SRFeat stage 1: generator (16 blocks x 128 ch) + MSE + Adam, LR 74 -> HR 296, batch 9;
* ``srfeat_gan`` SRFeat stage 2: G (BN frozen), VGG-16 conv5_3 on SR and HR, image and feature
                 discriminators: one D step, then the G step (perceptual + both adversarial terms);
* ``dmenet_b``   DMENet's B (VGG-16 encoder + U-Net decoder with aux heads + 7 res blocks), L_B + L_aux,
                 240x240 crops, batch 3 (the `b` ablation: B alone).

The PyTorch networks are written here layer for layer (same shapes, same FLOPs; eager mode,
channels-last, Adam). Weights are not shared: the timing does not depend on them. Both sides run on
the same thread count. The PyTorch step and the JAX step under each ``--conv_weight_grad`` mode are
timed in interleaved rounds (`benchmarks/timing.py`), so a drift in the shared machine's speed falls on all
alike: each round gives every step a turn of ``--settle`` untimed calls (1: a JAX step right after a
PyTorch one is 40% slower, its huge pages to be found again) and one timed call. Step times are medians of
``--steps`` rounds after one warm-up round; JAX/PyTorch is the median of the per-round ratios, with their
range. GFLOP/s uses XLA's FLOP count of the JAX step for both; the machine's peak is estimated as the best
of a few large float32 matmuls in JAX (the fastest kernel either library has here). The last two columns are
each step's median system CPU seconds a call (``getrusage``, every call including the settling ones): the
kernel's work of mapping and zeroing the memory a step allocates, which XLA:CPU does afresh every step for its
temporaries (2.1 s of SRFeat G's 11.2 s on the 2-core CPU, docs/cpu_speed.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--only", default="srfeat_g,srfeat_gan,dmenet_b")
    p.add_argument("--small", action="store_true", help="small shapes (a smoke run, not a comparison)")
    p.add_argument(
        "--settle",
        type=int,
        default=1,
        help="untimed calls before each timed one, so each step runs in its own steady state (benchmarks/timing.py)",
    )
    p.add_argument(
        "--conv_weight_grad",
        default="auto,xla",
        help="comma-separated config.conv_weight_grad modes to time the JAX step under, one row each",
    )
    a = p.parse_args()
    if a.steps < 1 or a.settle < 0:
        p.error(f"--steps must be at least 1 and --settle at least 0 (got {a.steps} and {a.settle})")
    unknown = set(a.only.split(",")) - {"srfeat_g", "srfeat_gan", "dmenet_b"}
    if unknown:
        p.error(f"--only: unknown step(s) {', '.join(sorted(unknown))}; use srfeat_g, srfeat_gan, dmenet_b")
    return a


ARGS = parse()
from common.train import hostmem, xla  # noqa: E402

xla.set_cpu_flags()
hostmem.reexec_with_tunables()  # both libraries run under the same malloc settings
# XLA:CPU's thread pool follows the process's CPU affinity; pin both libraries to the same cores.
if ARGS.threads < (os.cpu_count() or 1):
    os.sched_setaffinity(0, set(range(ARGS.threads)))

import numpy as np  # noqa: E402
import timing  # noqa: E402  (benchmarks/, this script's folder)

try:
    import torch  # noqa: E402
    import torch.nn as tnn  # noqa: E402
    import torch.nn.functional as F  # noqa: E402
except ImportError:
    sys.exit("vs_torch.py needs PyTorch: pip install -e '.[torch]'")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

torch.set_num_threads(ARGS.threads)
CL = torch.channels_last


# ----------------------------------------------------------------------------- PyTorch networks


def lrelu(x):
    return F.leaky_relu(x, 0.2)


class ConvBNAct(tnn.Module):
    def __init__(self, cin, cout, act=True):
        super().__init__()
        self.conv, self.bn, self.act = tnn.Conv2d(cin, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout), act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return lrelu(x) if self.act else x


class ResBlock(tnn.Module):
    def __init__(self, cin, c, project, post_act):
        super().__init__()
        self.a, self.b = ConvBNAct(cin, c), ConvBNAct(c, c, act=False)
        self.short = tnn.Conv2d(cin, c, 1, bias=False) if project or cin != c else None
        self.post_act = post_act

    def forward(self, x):
        h = self.b(self.a(x))
        s = self.short(x) if self.short is not None else x
        return lrelu(h + s) if self.post_act else h + s


class SRFeatG(tnn.Module):
    def __init__(self, c=128, blocks=16, scale=4):
        super().__init__()
        self.head = tnn.Conv2d(3, c, 9, padding=4)
        self.blocks = tnn.ModuleList([ResBlock(c, c, False, False) for _ in range(blocks)])
        self.skips = tnn.ModuleList([tnn.Conv2d(c, c, 1, bias=False) for _ in range(blocks - 1)])
        self.ups = tnn.ModuleList([tnn.Conv2d(c, 4 * c, 3, padding=1) for _ in range(scale // 2)])
        self.out = tnn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x * 2 - 1)
        outs = []
        for b in self.blocks:
            h = b(h)
            outs.append(h)
        for s, o in zip(self.skips, outs[:-1], strict=True):
            h = h + s(o)
        for u in self.ups:
            h = lrelu(F.pixel_shuffle(u(h), 2))
        return (self.out(h) + 1) / 2


VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16Features(tnn.Module):
    """conv1_1 … conv5_3 with ReLU; returns the last conv of each block (conv1_2, conv2_2, conv3_3, conv4_3,
    conv5_3), max-pooling between blocks."""

    def __init__(self):
        super().__init__()
        convs, cin = [], 3
        for block in VGG16:
            row = []
            for c in block:
                row.append(tnn.Conv2d(cin, c, 3, padding=1))
                cin = c
            convs.append(tnn.ModuleList(row))
        self.blocks = tnn.ModuleList(convs)

    def forward(self, x):
        outs = []
        for i, block in enumerate(self.blocks):
            if i:
                x = F.max_pool2d(x, 2)
            for conv in block:
                x = F.relu(conv(x))
            outs.append(x)
        return outs


SRGAN_LAYERS = ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2))


class ConvD(tnn.Module):
    def __init__(self, cin, side):
        super().__init__()
        self.first = tnn.Conv2d(cin, 64, 3, padding=1)
        layers, c = [], 64
        for co, s in SRGAN_LAYERS:
            layers += [tnn.Conv2d(c, co, 3, stride=s, padding=1, bias=False), tnn.BatchNorm2d(co)]
            c, side = co, -(-side // s)
        self.layers = tnn.ModuleList(layers)
        self.dense = tnn.Linear(c * side * side, 1024)
        self.logit = tnn.Linear(1024, 1)

    def forward(self, x):
        x = lrelu(self.first(x))
        for i in range(0, len(self.layers), 2):
            x = lrelu(self.layers[i + 1](self.layers[i](x)))
        return self.logit(lrelu(self.dense(x.flatten(1))))[:, 0]


DECODER = ((5, 512), (4, 256), (3, 128), (2, 64), (1, 64))


class DMENetB(tnn.Module):
    def __init__(self, n_res=7):
        super().__init__()
        self.encoder = VGG16Features()
        skip_ch = {4: 512, 3: 256, 2: 128, 1: 64}
        dec, aux, cin = [], [], 512
        for level, ch in DECODER:
            if level in skip_ch:
                cin += skip_ch[level]
            dec.append(tnn.ModuleList([ConvBNAct(cin if i == 0 else ch, ch) for i in range(3)]))
            aux.append(tnn.Conv2d(ch, 1, 3, padding=1))
            cin = ch
        self.dec, self.aux = tnn.ModuleList(dec), tnn.ModuleList(aux)
        self.res = tnn.ModuleList([ResBlock(64, 64, True, True) for _ in range(n_res)])
        self.head = tnn.Sequential(ConvBNAct(64, 64), ConvBNAct(64, 32))
        self.out = tnn.Conv2d(32, 1, 3, padding=1)

    def forward(self, x):
        feats = self.encoder(x)  # conv1_2 … conv5_3
        h, aux = feats[4], []
        for (level, _), convs, head in zip(DECODER, self.dec, self.aux, strict=True):
            if level < 5:
                h = torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), feats[level - 1]], 1)
            for conv in convs:
                h = conv(h)
            aux.append(torch.sigmoid(head(h)))
        for r in self.res:
            h = r(h)
        return torch.sigmoid(self.out(self.head(h))), aux


# ----------------------------------------------------------------------------- PyTorch steps


def t(shape):
    return torch.rand(*shape).to(memory_format=CL)


def torch_srfeat_g(s):
    g = SRFeatG(s["channels"], s["blocks"]).to(memory_format=CL)
    opt = torch.optim.Adam(g.parameters(), 1e-4)
    lr, hr = t((s["batch"], 3, s["lr"], s["lr"])), t((s["batch"], 3, 4 * s["lr"], 4 * s["lr"]))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(g(lr), hr)
        loss.backward()
        opt.step()
        return loss

    return step


def torch_srfeat_gan(s):
    hr_side = 4 * s["lr"]
    g, vgg = SRFeatG(s["channels"], s["blocks"]).to(memory_format=CL), VGG16Features().to(memory_format=CL)
    g.eval()  # stage 2 freezes the generator's BatchNorm
    for p in vgg.parameters():
        p.requires_grad_(False)
    d_img, d_feat = ConvD(3, hr_side).to(memory_format=CL), ConvD(512, hr_side // 16).to(memory_format=CL)
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, eps=1e-10)
    opt_d = torch.optim.Adam(list(d_img.parameters()) + list(d_feat.parameters()), 1e-4, eps=1e-10)
    lr, hr = t((s["batch"], 3, s["lr"], s["lr"])), t((s["batch"], 3, hr_side, hr_side))
    bce = F.binary_cross_entropy_with_logits

    def step():
        sr = g(lr)
        phi_sr = vgg(sr)[4]
        with torch.no_grad():
            phi_hr = vgg(hr)[4]
        # D step on stopped fakes
        opt_d.zero_grad(set_to_none=True)
        ld = 0.0
        for d, real, fake in ((d_img, hr, sr.detach()), (d_feat, phi_hr, phi_sr.detach())):
            lr_, lf = d(real), d(fake)
            ld = ld + bce(lr_, torch.ones_like(lr_)) + bce(lf, torch.zeros_like(lf))
        (1e-3 * ld).backward()
        opt_d.step()
        # G step against the updated D (its parameters are not stepped here)
        opt_g.zero_grad(set_to_none=True)
        lg = F.mse_loss(phi_sr, phi_hr)
        for d, fake in ((d_img, sr), (d_feat, phi_sr)):
            lf = d(fake)
            lg = lg + 1e-3 * bce(lf, torch.ones_like(lf))
        lg.backward()
        opt_g.step()
        return lg

    return step


def torch_dmenet_b(s):
    b = DMENetB(s["n_res"]).to(memory_format=CL)
    opt = torch.optim.Adam(b.parameters(), 1e-4)
    x, y = t((s["batch"], 3, s["crop"], s["crop"])), t((s["batch"], 1, s["crop"], s["crop"]))

    def step():
        opt.zero_grad(set_to_none=True)
        out, aux = b(x)
        loss = F.mse_loss(out, y)
        for a in aux:
            f = s["crop"] // a.shape[-1]
            loss = loss + F.mse_loss(a, y[:, :, f // 2 :: f, f // 2 :: f])
        loss.backward()
        opt.step()
        return loss

    return step


# ----------------------------------------------------------------------------- the JAX side: the project's own steps


def jax_step(config_file: str, variant: str, overrides: dict, mode: str):
    """(step function, XLA FLOPs per step) of the project's jitted train step on a fixed batch, its convolutions'
    weight gradients under `mode` (``config.conv_weight_grad``)."""
    import importlib

    from common.nn import conv
    from common.train import sharding, trainer

    config = importlib.import_module(f"configs.{config_file}").get_config(variant)
    config.update_from_flattened_dict({**overrides, "conv_weight_grad": mode})  # locked: misspelt keys fail
    task = trainer.build_task(config)
    run = trainer.setup(task, config)
    state = run.fresh_state()
    batch = sharding.to_global(next(iter(task.train_data(0))), run.mesh)
    flops = trainer.step_flops(task, run.mesh, state, batch, run.key, run.frozen)
    box = {"state": state}

    def step():
        box["state"], m = run.step(box["state"], batch, run.key, run.frozen)
        return m

    with conv.weight_grad(mode):  # compiled now, under its own mode: the mode is read when a step is traced
        _wait(step())
    return step, flops


def with_system_time(step, record: list):
    """`step`, appending each call's system CPU seconds (the whole process's: page faults, zeroing new memory)
    to `record`; the call waits for its result, so the time is the step's own."""

    def call():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        out = step()
        _wait(out)
        record.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - before)
        return out

    return call


def _wait(out):
    """Blocks until a step's result exists (JAX dispatches asynchronously; a torch scalar is read)."""
    if isinstance(out, torch.Tensor):
        out.item()
    else:
        jax.block_until_ready(out)


def matmul_peak() -> float:
    """GFLOP/s of the best of a few 2048^3 float32 matmuls under XLA (a practical peak of this machine)."""
    a = jnp.asarray(np.random.rand(2048, 2048).astype(np.float32))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = min(_time_once(f, a) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _time_once(f, a):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a))
    return time.perf_counter() - t0


def main():
    small = ARGS.small
    sr = dict(channels=32 if small else 128, blocks=4 if small else 16, lr=16 if small else 74, batch=4 if small else 9)
    dm = dict(crop=64 if small else 240, batch=2 if small else 3, n_res=7)
    srfeat = {"model.channels": sr["channels"], "model.blocks": sr["blocks"], "data.lr_size": sr["lr"]}
    srfeat |= {"batch_size": sr["batch"], "data.threads": 1}
    cases = {
        "srfeat_g": (lambda: torch_srfeat_g(sr), ("srfeat", "", srfeat)),
        "srfeat_gan": (
            lambda: torch_srfeat_gan(sr),
            ("srfeat", "gan", {**srfeat, "init_from": "scratch"}),
        ),
        "dmenet_b": (
            lambda: torch_dmenet_b(dm),
            ("defocus", "b", {"data.crop": dm["crop"], "batch_size": dm["batch"], "data.threads": 1}),
        ),
    }
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__} {jax.devices()}")
    print(f"cpu cores {os.cpu_count()}, pinned to {ARGS.threads}; sizes: {'small' if small else 'authors'}")
    peak = matmul_peak()
    print(f"float32 matmul peak (XLA, 2048^3): {peak:.1f} GFLOP/s")
    print(
        f"{'step [conv_weight_grad]':<22} {'jax s':>8} {'torch s':>8} {'jax/torch (range)':>21} {'GFLOP':>8} "
        f"{'jax GF/s':>9} {'torch GF/s':>10} {'jax %peak':>9} {'jax sys s':>9} {'torch sys s':>11}"
    )
    modes = ARGS.conv_weight_grad.split(",")
    for name in ARGS.only.split(","):
        make_torch, (cfg, variant, overrides) = cases[name]
        steps, flops = {"torch": make_torch()}, {}
        for mode in modes:
            steps[mode], flops[mode] = jax_step(cfg, variant, overrides, mode)
        system = {k: [] for k in steps}
        steps = {k: with_system_time(f, system[k]) for k, f in steps.items()}
        times = timing.interleaved(steps, ARGS.steps, warmup=1, settle=ARGS.settle)  # each call waits itself
        del steps
        tt, st = float(np.median(times["torch"])), float(np.median(system["torch"]))
        for mode in modes:
            tj, gf = float(np.median(times[mode])), flops[mode] / 1e9
            mid, low, high = timing.ratio(times["torch"], times[mode])
            label = f"{name} [{mode}]"
            print(
                f"{label:<22} {tj:8.3f} {tt:8.3f} {mid:8.2f} ({low:.2f}-{high:.2f}) {gf:8.1f} {gf / tj:9.1f} "
                f"{gf / tt:10.1f} {100 * gf / tj / peak:8.0f}% {np.median(system[mode]):9.2f} {st:11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
