"""Self-supervised x4 face super-resolution from low-resolution faces only (paper 003; Jo & Park).

Training never sees a high-resolution face: each input face I (S x S) is
its own ground truth.

    I ─► one random degradation (rot 90/180/270 | Gaussian noise | Gaussian blur | JPEG)
      ─► pairs  I↓4 → I,   I↓8 → I↓2,   I↓16 → I↓4      (the paper: 64→256, 32→128, 16→64)
    G: conv → [pre-act res block, avg-pool down] x n → bottleneck → [res block, nearest up] x (n + 2) → RGB
    D: conv → [pre-act res block, down] x n → LReLU → conv → 1x1 conv: a patch map, shared by all scales

Losses, summed over the scales (seed Section 2.2):
    L_G = ‖G(LR) − GT‖₁ + ½ (D(G(LR)) − 1)² + Σ_i ‖f_i(G(LR)) − f_i(GT)‖₁    (f_i: VGG-19 layers)
    L_D = ½ (D(GT) − 1)² + ½ D(G(LR))²                                          (LSGAN)
Per batch: a G step, then a D step on the same (stopped) G outputs.
At test time G maps the 256 input to 1024.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from common.nn import conv, gan, layers
from common.pretrained import vgg
from common.quality import metrics
from common.train import optim, precision

# ----------------------------------------------------------------------------- networks


def _w(c, width):
    return max(4, int(round(c * width)))


class Generator(nn.Module):
    """StarGAN-v2-style encoder/decoder without style codes, x4 overall."""

    width: float = 1.0
    n_down: int = 2
    n_bottleneck: int = 2
    global_skip: bool = True

    @nn.compact
    def __call__(self, x):
        dims = [_w(64 * 2**i, self.width) for i in range(self.n_down + 1)]  # 64, 128, 256
        # no biases before the instance norms: they could not be learned (zero gradient)
        h = conv.Conv(dims[0], (3, 3), use_bias=False, name="from_rgb")(x * 2.0 - 1.0)
        for i in range(self.n_down):
            h = layers.PreActResBlock(dims[i + 1], resample="down", name=f"enc{i}")(h)
        for i in range(self.n_bottleneck):
            h = layers.PreActResBlock(dims[-1], name=f"mid{i}")(h)
        ups = list(reversed(dims[:-1])) + [_w(32, self.width), _w(32, self.width)]  # n_down + 2 ups: x4 overall
        for i, c in enumerate(ups):
            h = layers.PreActResBlock(c, resample="up", name=f"dec{i}")(h)
        h = layers.lrelu(nn.InstanceNorm(epsilon=1e-5, name="out_norm")(h))
        y = conv.Conv(3, (1, 1), kernel_init=nn.initializers.zeros, name="to_rgb")(h)  # starts as bicubic
        if self.global_skip:
            # Instance norm throughout removes each image's mean colour and contrast from the features
            # (StarGAN v2 puts them back through AdaIN style codes, which this task has none of), so
            # the output is a residual on the bicubic up-sampled input.
            n, hh, ww, c = x.shape
            return jax.image.resize(x, (n, 4 * hh, 4 * ww, c), "cubic") + y
        return (y + 1.0) / 2.0


class Discriminator(nn.Module):
    """StarGAN-v2-style residual trunk (no normalisation) with a patch real/fake map."""

    width: float = 1.0
    n_down: int = 3

    @nn.compact
    def __call__(self, x):
        h = conv.Conv(_w(64, self.width), (3, 3))(x * 2.0 - 1.0)
        for i in range(self.n_down):
            h = layers.PreActResBlock(_w(64 * 2 ** (i + 1), self.width), resample="down", norm=False)(h)
        h = conv.Conv(_w(64 * 2**self.n_down, self.width), (3, 3))(layers.lrelu(h))
        return conv.Conv(1, (1, 1))(layers.lrelu(h))


# ----------------------------------------------------------------------------- losses (per example)


def pixel_loss(sr, gt):
    """‖G(LR) − GT‖₁ (mean absolute error)."""
    return metrics.mae(sr, gt)


def feature_loss(feats_sr: dict, feats_gt: dict, names) -> jax.Array:
    """Σ_i ‖f_i(G(LR)) − f_i(GT)‖₁ over the configured VGG-19 layers (mean absolute error each)."""
    return sum(metrics.mae(feats_sr[n], feats_gt[n]) for n in names)


def generator_adv_loss(d_fake):
    """½ (D(G(LR)) − 1)², averaged over the patch map."""
    return 0.5 * gan.lsgan_generator_loss(d_fake)


def discriminator_loss(d_real, d_fake):
    """½ (D(GT) − 1)² + ½ D(G(LR))²."""
    return 0.5 * gan.lsgan_discriminator_loss(d_real, d_fake)


# ----------------------------------------------------------------------------- state and step


@flax.struct.dataclass
class State:
    step: jax.Array
    g: Any
    d: Any
    opt_g: Any
    opt_d: Any


class Nets:
    def __init__(self, config, backbone: vgg.Backbone | None = None):
        m = config.model
        self.config = config
        g = Generator(width=m.width, n_down=m.n_down, n_bottleneck=m.n_bottleneck, global_skip=m.global_skip)
        self.g = precision.wrap(g, config)
        self.d = precision.wrap(Discriminator(width=m.d_width, n_down=m.d_down), config)
        backbone = backbone or vgg.Backbone.spec(width=m.vgg_width)
        # f_i named by their VGG-19 layers (the paper's); resolved for the backbone (VGG-16: conv3_3, conv4_3)
        self.layers = tuple(backbone.layer(n) for n in config.loss.vgg_layers.split(","))
        order = vgg.layer_names(backbone.arch)
        self.vgg = precision.wrap(backbone.module(max(self.layers, key=order.index)), config)
        # Caffe-normalised VGG-19 features are ~58x torch-normalised ones; 1/255 keeps them near the pixel L1
        self.feature_scale = config.loss.feature_scale or (1 / 255 if backbone.preprocess == "caffe" else 1.0)
        self.tx = optim.adam_with_decay(config.optim, b2=config.optim.b2)

    def features(self, frozen, x):
        f = self.vgg.apply(frozen["vgg"], x)
        return {n: f[n] * self.feature_scale for n in self.layers}

    def upscale(self, state: State, lr):
        return self.g.apply({"params": state.g}, lr)


def init_state(key, nets: Nets, config) -> State:
    kg, kd = jax.random.split(key)
    s = config.data.input_size
    g = nets.g.init(kg, jnp.zeros((1, s // 4, s // 4, 3)))["params"]
    d = nets.d.init(kd, jnp.zeros((1, s, s, 3)))["params"]
    return State(step=jnp.zeros((), jnp.int32), g=g, d=d, opt_g=nets.tx.init(g), opt_d=nets.tx.init(d))


def train_step(state: State, batch: dict, key, frozen, *, nets: Nets):
    """G step over all scales, then a D step on the same stopped outputs. Pure; `key` unused."""
    del key
    lam = nets.config.loss
    n_scales = nets.config.data.scales

    def g_loss_fn(g):
        total, terms, outs = 0.0, {"l1": 0.0, "adv": 0.0, "vgg": 0.0}, []
        for s in range(n_scales):
            lr, gt = batch[f"lr{s}"], batch[f"gt{s}"]
            sr = nets.g.apply({"params": g}, lr)
            t = {
                "l1": jnp.mean(pixel_loss(sr, gt)),
                "adv": jnp.mean(generator_adv_loss(nets.d.apply({"params": state.d}, sr))),
                "vgg": jnp.mean(feature_loss(nets.features(frozen, sr), nets.features(frozen, gt), nets.layers)),
            }
            total = total + t["l1"] + lam.adv * t["adv"] + lam.vgg * t["vgg"]
            terms = {k: terms[k] + t[k] for k in terms}
            outs.append(sr)
        return total, (terms, outs)

    (l_g, (terms, outs)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g)
    g, opt_g = optim.apply_update(nets.tx, grads, state.g, state.opt_g)

    def d_loss_fn(d):
        total = 0.0
        for s in range(n_scales):
            real = nets.d.apply({"params": d}, batch[f"gt{s}"])
            fake = nets.d.apply({"params": d}, jax.lax.stop_gradient(outs[s]))
            total = total + jnp.mean(discriminator_loss(real, fake))
        return total

    l_d, g_d = jax.value_and_grad(d_loss_fn)(state.d)
    d, opt_d = optim.apply_update(nets.tx, g_d, state.d, state.opt_d)
    out = {f"loss/{k}": v for k, v in terms.items()}
    out.update({"loss/g": l_g, "loss/d": l_d})
    out["train/psnr"] = jnp.mean(metrics.psnr(jnp.clip(outs[0], 0, 1), batch["gt0"]))
    new = State(step=state.step + 1, g=g, d=d, opt_g=opt_g, opt_d=opt_d)
    return new, out
