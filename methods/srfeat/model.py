"""SRFeat: single-image super-resolution with feature discrimination (patent 000; Park et al., ECCV 2018).

    LR ─► 9x9 conv ─► block 1 ─► block 2 ─► … ─► block 16 ─┐
                        │1x1       │1x1              │1x1   + (the patent's weighted-sum node, claim 5)
                        └──────────┴─────────────────┴──────┘
          ─► [conv3x3 → depth-to-space x2 → LReLU] x log2(s) ─► conv3x3 ─► SR

    image D   d_i(SR | HR)             (SRGAN-style strided convs → dense → logit)
    feature D d_f(φ(SR) | φ(HR))       φ = VGG-19 conv5_4 after ReLU, / 12.75

Stage 1 (``stage=pretrain``, SRFeat_M):  L = mean (G(LR) − HR)²
Stage 2 (``stage=gan``, SRFeat_IF), initialised from stage 1, generator BN frozen:
    L_p  = mean (φ(SR) − φ(HR))²                                     perceptual
    L_G  = L_p + 1e-3·(−log d_i(SR)) + 1e-3·(−log d_f(φ(SR)))        (seed claim 2)
    L_D  = 1e-3·[−log d_i(HR) − log(1 − d_i(SR)) − log d_f(φ(HR)) − log(1 − d_f(φ(SR)))]
With ``disc.image=False`` only the feature GAN is used (seed claim 1). Per
batch: one D step, then one G step against the updated D (``alternate``), or
both from the same D (``simultaneous``). The generator and VGG forward
passes are shared by both steps (exact: neither depends on D).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common.errors import ConfigError
from common.nn import conv, gan, layers
from common.pretrained import vgg
from common.quality import metrics
from common.train import checkpoint, optim, precision

# ----------------------------------------------------------------------------- networks


def upsampling_factors(scale: int) -> tuple[int, ...]:
    """Pixel-shuffle stages of a scale: 2 → (2,), 3 → (3,), 4 → (2, 2)."""
    table = {2: (2,), 3: (3,), 4: (2, 2)}
    if scale not in table:
        raise ConfigError(f"config model.scale={scale}: SRFeat supports 2, 3 or 4")
    return table[scale]


class Generator(nn.Module):
    """The SRFeat generator; images in [0, 1] (mapped to [−1, 1] inside), output linear."""

    channels: int = 128
    blocks: int = 16
    scale: int = 4
    long_skip: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        h = conv.Conv(self.channels, (9, 9), name="head")(x * 2.0 - 1.0)
        outs = []
        for i in range(1, self.blocks + 1):
            h = layers.ResBlock(self.channels, project=False, post_act=False, name=f"block{i}")(h, train)
            self.sow("intermediates", "blocks", h)  # appended in order: blocks 1..B
            outs.append(h)
        if self.long_skip:  # Σ_{i<B} W_i * block_i (1x1, no bias) + block_B
            for i, o in enumerate(outs[:-1], start=1):
                h = h + conv.Conv(self.channels, (1, 1), use_bias=False, name=f"skip{i}")(o)
            self.sow("intermediates", "skip_sum", h)
        for j, r in enumerate(upsampling_factors(self.scale)):
            h = conv.Conv(self.channels * r * r, (3, 3), name=f"up{j}")(h)
            h = layers.lrelu(layers.depth_to_space(h, r))
        y = conv.Conv(3, (3, 3), name="out")(h)
        return (y + 1.0) / 2.0


# ----------------------------------------------------------------------------- losses (per example)


def pixel_loss(sr, hr):
    """Stage 1: (1/WHC) Σ (G(LR) − HR)²."""
    return metrics.mse(sr, hr)


def perceptual_loss(phi_sr, phi_hr):
    """L_p: (1/W_ℓH_ℓC_ℓ) Σ (φ(SR) − φ(HR))² on the scaled conv5_4 features."""
    return metrics.mse(phi_sr, phi_hr)


generator_adv_loss = gan.bce_generator_loss  # −log d(G(LR))
discriminator_loss = gan.bce_discriminator_loss  # −log d(real) − log(1 − d(fake))


# ----------------------------------------------------------------------------- state


@flax.struct.dataclass
class State:
    step: jax.Array
    g: Any  # generator params
    g_stats: Any  # generator BatchNorm statistics (frozen in stage 2)
    opt_g: Any
    d: dict  # {"image"|"feature": discriminator params}; empty in stage 1
    d_stats: dict
    opt_d: dict


class Nets:
    """Module definitions and the stage's optimizer (static: never pytree leaves)."""

    def __init__(self, config, backbone: vgg.Backbone | None = None):
        m = config.model
        self.config = config
        self.scale = m.scale
        g = Generator(channels=m.channels, blocks=m.blocks, scale=m.scale, long_skip=m.long_skip)
        self.g = precision.wrap(g, config)
        self.d = precision.wrap(gan.ConvDiscriminator(width=config.disc.width), config)
        backbone = backbone or vgg.Backbone.spec(width=config.loss.vgg_width)
        self.vgg = precision.wrap(backbone.module("conv5_4"), config)
        self.phi_layer = backbone.layer("conv5_4")
        # the authors' 1/12.75 is for Caffe-normalised VGG-19; torch-normalised VGG-16 conv5_3 has rms ≈ 1 on photos
        self.feature_scale = config.loss.feature_scale or (1 / 12.75 if backbone.preprocess == "caffe" else 1.0)
        self.gan_stage = config.stage == "gan"
        self.discs = tuple(n for n in ("image", "feature") if self.gan_stage and config.disc[n])
        o = config.gan if self.gan_stage else config.pretrain
        self.tx = optim.adam_with_decay(o, eps=o.eps)

    def feature_shape(self, hr_size: int) -> tuple[int, int, int]:
        side = hr_size // 16  # four 2x2 max-pools before conv5_4
        return side, side, vgg.width_of("conv5_4", self.config.loss.vgg_width)

    def features(self, frozen, x):
        """φ(x): VGG-19 conv5_4 (VGG-16 conv5_3) after ReLU, times the feature scale."""
        return self.vgg.apply(frozen["vgg"], x)[self.phi_layer] * self.feature_scale

    def upscale(self, state: State, lr):
        """Test-time generator (BatchNorm running statistics)."""
        return self.g.apply({"params": state.g, "batch_stats": state.g_stats}, lr, train=False)


def init_state(key, nets: Nets, config, g_init=None) -> State:
    kg, ki, kf = jax.random.split(key, 3)
    n = config.data.lr_size
    hr = n * config.model.scale
    vg = nets.g.init(kg, jnp.zeros((1, n, n, 3)), train=False)
    g, g_stats = (vg["params"], vg["batch_stats"]) if g_init is None else g_init
    d, d_stats = {}, {}
    shapes = {"image": (hr, hr, 3), "feature": nets.feature_shape(hr)}
    for name, k in (("image", ki), ("feature", kf)):
        if name in nets.discs:
            v = nets.d.init(k, jnp.zeros((1, *shapes[name])), train=False)
            d[name], d_stats[name] = v["params"], v["batch_stats"]
    return State(
        step=jnp.zeros((), jnp.int32),
        g=g,
        g_stats=g_stats,
        opt_g=nets.tx.init(g),
        d=d,
        d_stats=d_stats,
        opt_d={k: nets.tx.init(v) for k, v in d.items()},
    )


# ----------------------------------------------------------------------------- steps


def pretrain_step(state: State, batch: dict, nets: Nets):
    lr, hr = batch["lr"], batch["hr"]

    def loss_fn(g):
        sr, upd = nets.g.apply({"params": g, "batch_stats": state.g_stats}, lr, train=True, mutable=["batch_stats"])
        return jnp.mean(pixel_loss(sr, hr)), (sr, upd["batch_stats"])

    (loss, (sr, g_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g)
    g, opt_g = optim.apply_update(nets.tx, grads, state.g, state.opt_g)
    new = state.replace(step=state.step + 1, g=g, g_stats=g_stats, opt_g=opt_g)
    return new, {"loss/pixel": loss, "train/psnr": jnp.mean(metrics.psnr(jnp.clip(sr, 0, 1), hr))}


def _d_apply(nets: Nets, params, stats, x):
    """Discriminator in training mode (batch statistics); returns (logits, updated statistics)."""
    logits, upd = nets.d.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
    return logits, upd["batch_stats"]


def gan_step(state: State, batch: dict, frozen, nets: Nets):
    cfg = nets.config
    lr, hr = batch["lr"], batch["hr"]
    # Shared forward passes: G (BN frozen) and φ on SR, with their VJPs for the G step.
    sr, g_vjp = jax.vjp(lambda g: nets.g.apply({"params": g, "batch_stats": state.g_stats}, lr, train=False), state.g)
    phi_hr = nets.features(frozen, hr)
    to_vgg = (lambda x: jnp.clip(x, 0.0, 1.0)) if cfg.loss.clip_vgg else (lambda x: x)
    phi_sr, phi_vjp = jax.vjp(lambda x: nets.features(frozen, to_vgg(x)), sr)
    pairs = {"image": (hr, sr), "feature": (phi_hr, phi_sr)}
    weights = {"image": cfg.loss.adv_image, "feature": cfg.loss.adv_feature}
    out = {}

    # ---- D step: −log d(real) − log(1 − d(fake)) for each discriminator, on stopped fakes
    def d_loss_fn(d_params):
        total, stats, aux = 0.0, {}, {}
        for name in nets.discs:
            real, fake = pairs[name]
            l_real, s = _d_apply(nets, d_params[name], state.d_stats[name], real)
            l_fake, s = _d_apply(nets, d_params[name], s, jax.lax.stop_gradient(fake))
            term = jnp.mean(discriminator_loss(l_real, l_fake))
            aux[f"loss/d_{name}"] = term
            aux[f"d_{name}/accuracy"] = 0.5 * (jnp.mean(l_real > 0) + jnp.mean(l_fake < 0))
            stats[name] = s
            total = total + term
        return cfg.loss.d_weight * total, (aux, stats)

    (l_d, (aux, d_stats)), g_d = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d)
    d_new, opt_d = {}, {}
    for name in nets.discs:
        d_new[name], opt_d[name] = optim.apply_update(nets.tx, g_d[name], state.d[name], state.opt_d[name])
    out.update(aux)
    out["loss/d"] = l_d

    # ---- G step against the updated D (alternate) or the same D (simultaneous)
    d_for_g = d_new if cfg.disc.schedule == "alternate" else state.d
    stats_for_g = d_stats if cfg.disc.schedule == "alternate" else state.d_stats

    def g_loss_fn(sr_, phi_sr_):
        terms = {"perceptual": jnp.mean(perceptual_loss(phi_sr_, phi_hr))}
        total = cfg.loss.perceptual * terms["perceptual"]
        if cfg.loss.pixel:  # a probe, not the patent's stage 2
            terms["pixel"] = jnp.mean(pixel_loss(sr_, hr))
            total = total + cfg.loss.pixel * terms["pixel"]
        for name in nets.discs:
            fake = sr_ if name == "image" else phi_sr_
            logits, _ = _d_apply(nets, d_for_g[name], stats_for_g[name], fake)
            terms[f"adv_{name}"] = jnp.mean(generator_adv_loss(logits))
            total = total + weights[name] * terms[f"adv_{name}"]
        return total, terms

    (l_g, terms), (gr_sr, gr_phi) = jax.value_and_grad(g_loss_fn, argnums=(0, 1), has_aux=True)(sr, phi_sr)
    (gr_sr_phi,) = phi_vjp(gr_phi)
    (grads,) = g_vjp(gr_sr + gr_sr_phi)
    g, opt_g = optim.apply_update(nets.tx, grads, state.g, state.opt_g)
    out.update({f"loss/{k}": v for k, v in terms.items()})
    out["loss/g"] = l_g
    out["train/psnr"] = jnp.mean(metrics.psnr(jnp.clip(sr, 0, 1), hr))
    new = state.replace(
        step=state.step + 1,
        g=g,
        opt_g=opt_g,
        d=d_new,
        d_stats=d_stats,
        opt_d=opt_d,
    )
    return new, out


def train_step(state: State, batch: dict, key, frozen, *, nets: Nets):
    """One stage-1 or stage-2 step. Pure; `key` is unused (no stochastic layers)."""
    del key
    if nets.gan_stage:
        return gan_step(state, batch, frozen, nets)
    return pretrain_step(state, batch, nets)


# ----------------------------------------------------------------------------- stage-2 initialisation


def _shapes(tree) -> dict[str, tuple]:
    return {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def load_generator(run: checkpoint.Run, abstract_g, abstract_stats, *, what: str):
    """(g, g_stats) of an SRFeat run (common.train.checkpoint.load_run), checked against this config's shapes."""
    out = []
    for tree, ref in ((run.state["g"], abstract_g), (run.state["g_stats"], abstract_stats)):
        got, want = _shapes(tree), _shapes(ref)
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:3]
            raise ConfigError(
                f"{what}: its generator does not match this config (model.channels/blocks/scale?); "
                f"first differences {diff}"
            )
        out.append(jax.tree.map(lambda x, r: np.asarray(x, r.dtype), tree, ref))
    return tuple(out)
