"""Tone enhancement with an inverse network (patent 001): networks, losses, state and the train step.

    x ──► G ──► G(x) ──► D (naturalness, 0..1)        y (natural photos) ──► D
                  │
                  └──► C (inverse, fewer layers) ──► C(G(x)) ≈ x

    I_D = A(x): a classical enhancement with FIXED parameters (`data.ALGORITHMS`),
    strong but possibly unnatural: the colour target.

Losses (patent Eqs. 1-6; one function each):
    L_color    = MSE(G(x), I_D)         ('l1' or 'ssim' as options, patent [0060])
    L_natural  = (D(G(x)) − 1)²          LSGAN, trains G
    L_D        = (D(y) − 1)² + D(G(x))²   trains D
    L_inverse  = MSE(C(G(x)), x)        trains C
    L_artifact = MSE(C(G(x)), x)        trains G (gradient through G(x))
    L_G = λ1·L_color + λ2·L_natural + λ3·L_artifact
Per batch (S510-S540): a G step against the current D and C, then a D step
and a C step on the same (stopped) G(x), so G runs forward once per step.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from common.errors import ConfigError
from common.nn import conv, gan, layers
from common.quality import metrics
from common.train import optim, precision

# ----------------------------------------------------------------------------- networks


class Generator(nn.Module):
    """The authors' enhancement network: stride-2 encoder, residual blocks, additive-skip decoder."""

    width: float = 1.0
    blocks: int = 16

    @nn.compact
    def __call__(self, x, train: bool):
        c = lambda n: max(4, int(round(n * self.width)))  # noqa: E731
        f0 = layers.ConvBNAct(c(32))(x, train)
        f1 = layers.lrelu(conv.Conv(c(64), (3, 3), strides=2)(f0))
        h = layers.lrelu(conv.Conv(c(128), (3, 3), strides=2)(f1))
        r = h
        for i in range(self.blocks):
            r = layers.ResBlock(c(128), project=False, post_act=False, name=f"block{i}")(r, train)
        h = conv.Conv(c(128), (3, 3), name="trunk_out")(r) + h  # long skip
        h = layers.lrelu(conv.Conv(c(64), (3, 3))(layers.upsample_nearest(h))) + f1
        h = layers.lrelu(conv.Conv(c(32), (3, 3))(layers.upsample_nearest(h))) + f0
        residual = conv.Conv(3, (3, 3), kernel_init=nn.initializers.zeros, name="out")(h)
        return x + 10.0 * residual


class PatentGenerator(nn.Module):
    """G as the patent's Fig. 2 draws it (``model.arch=patent``): an encoder of three stride-2 convs (211-213),
    a residual part of four convs (221-224) around a skip, and a decoder of three x2 layers (231-233) whose
    last one outputs the image, with no skip from the input. The decoder's stride-2 (transposed) convolutions
    are nearest x2 + 3x3 conv here. Input sides must be multiples of 8."""

    width: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool):
        del train  # no batch norm: the figure draws none
        c = lambda n: max(4, int(round(n * self.width)))  # noqa: E731
        h = x
        for n in (32, 64, 128):
            h = layers.lrelu(conv.Conv(c(n), (3, 3), strides=2)(h))
        r = h
        for i in range(4):
            r = conv.Conv(c(128), (3, 3), name=f"refine{i}")(r)
            r = layers.lrelu(r) if i < 3 else r
        h = h + r
        for n in (64, 32):
            h = layers.lrelu(conv.Conv(c(n), (3, 3))(layers.upsample_nearest(h)))
        return conv.Conv(3, (3, 3), name="out")(layers.upsample_nearest(h))


ARCHS = {"authors": 4, "patent": 8}  # G's architecture -> the multiple its input sides must be


def generator(m) -> nn.Module:
    """G of a ``model`` config block: the authors' code ('authors', default) or the patent's figure ('patent')."""
    if m.get("arch", "authors") == "patent":
        return PatentGenerator(width=m.width)
    return Generator(width=m.width, blocks=m.blocks)


class InverseNet(nn.Module):
    """C: `layers` plain 3x3 convs mapping G(x) back to x (residual on its input)."""

    layers: int = 5
    channels: int = 32

    @nn.compact
    def __call__(self, y):
        h = y
        for _ in range(self.layers - 1):
            h = layers.lrelu(conv.Conv(self.channels, (3, 3))(h))
        return y + conv.Conv(3, (3, 3))(h)


def naturalness_discriminator(width: float) -> gan.ConvDiscriminator:
    """D: conv + 4 stride-2 convs → flatten → dense → one output (sigmoid applied by the caller)."""
    return gan.ConvDiscriminator(
        first=32, spec=((64, 2), (128, 2), (256, 2), (256, 2)), dense=256, width=width, batch_norm=False
    )


# ----------------------------------------------------------------------------- losses (per example)


def color_loss(out, target, kind: str = "mse"):
    """Eq. 2: L_color between G(x) and I_D (seed [0060]: MSE, or L1, or 1 − SSIM)."""
    if kind == "mse":
        return metrics.mse(out, target)
    if kind == "l1":
        return metrics.mae(out, target)
    if kind == "ssim":
        return 1.0 - metrics.ssim(out, target)
    raise ConfigError(f"config loss.color={kind!r}: expected mse, l1 or ssim")


natural_loss = gan.lsgan_generator_loss  # Eq. 3: (D(G(x)) − 1)²
discriminator_loss = gan.lsgan_discriminator_loss  # Eq. 4: (D(y) − 1)² + D(G(x))²


def inverse_loss(c_out, x):
    """Eqs. 5 and 6: MSE(C(G(x)), x) (trains C as L_inverse, G as L_artifact)."""
    return metrics.mse(c_out, x)


# ----------------------------------------------------------------------------- state and step


@flax.struct.dataclass
class State:
    step: jax.Array
    g: Any
    g_stats: Any
    d: Any
    c: Any
    opt_g: Any
    opt_d: Any
    opt_c: Any


class Nets:
    def __init__(self, config):
        m = config.model
        self.config = config
        self.g = precision.wrap(generator(m), config)
        self.d = precision.wrap(naturalness_discriminator(m.d_width), config)
        self.c = precision.wrap(InverseNet(layers=m.inverse_layers, channels=m.inverse_channels), config)
        self.tx = optim.adam_with_decay(config.optim)

    def d_prob(self, d_params, img):
        """D's naturalness in (0, 1)."""
        return nn.sigmoid(self.d.apply({"params": d_params}, img, train=True))

    def enhance(self, state: State, x):
        """G at test time (BatchNorm running statistics)."""
        return self.g.apply({"params": state.g, "batch_stats": state.g_stats}, x, train=False)

    def invert(self, c_params, y):
        """C(y) with the given inverse-network params."""
        return self.c.apply({"params": c_params}, y)


def init_state(key, nets: Nets, config) -> State:
    kg, kd, kc = jax.random.split(key, 3)
    n = config.data.crop
    img = jnp.zeros((1, n, n, 3))
    vg = nets.g.init(kg, img, train=False)
    d = nets.d.init(kd, img, train=False)["params"]
    c = nets.c.init(kc, img)["params"]
    return State(
        step=jnp.zeros((), jnp.int32),
        g=vg["params"],
        g_stats=vg.get("batch_stats", {}),  # none for model.arch=patent (no batch norm)
        d=d,
        c=c,
        opt_g=nets.tx.init(vg["params"]),
        opt_d=nets.tx.init(d),
        opt_c=nets.tx.init(c),
    )


def train_step(state: State, batch: dict, key, frozen, *, nets: Nets):
    """G step (S510-S520), then D step (S530) and C step (S540) on the same G(x). Pure."""
    del key, frozen
    lam = nets.config.loss
    x, target, natural = batch["x"], batch["target"], batch["natural"]

    # ---- G: λ1 L_color + λ2 L_natural + λ3 L_artifact against the current D and C
    def g_loss_fn(g):
        out, upd = nets.g.apply({"params": g, "batch_stats": state.g_stats}, x, train=True, mutable=["batch_stats"])
        terms = {"color": jnp.mean(color_loss(out, target, lam.color))}
        total = lam.lambda1 * terms["color"]
        if lam.lambda2:
            terms["natural"] = jnp.mean(natural_loss(nets.d_prob(state.d, out)))
            total = total + lam.lambda2 * terms["natural"]
        if lam.lambda3:
            terms["artifact"] = jnp.mean(inverse_loss(nets.c.apply({"params": state.c}, out), x))
            total = total + lam.lambda3 * terms["artifact"]
        return total, (terms, out, upd.get("batch_stats", {}))

    (l_g, (terms, out, g_stats)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g)
    g_new, opt_g = optim.apply_update(nets.tx, grads, state.g, state.opt_g)
    fake = jax.lax.stop_gradient(out)
    metrics_ = {f"loss/{k}": v for k, v in terms.items()}
    metrics_["loss/g"] = l_g

    # ---- D: (D(y) − 1)² + D(G(x))²
    d_params, opt_d = state.d, state.opt_d
    if lam.lambda2:

        def d_loss_fn(p):
            p_real, p_fake = nets.d_prob(p, natural), nets.d_prob(p, fake)
            return jnp.mean(discriminator_loss(p_real, p_fake)), (jnp.mean(p_real), jnp.mean(p_fake))

        (l_d, (p_real, p_fake)), g_d = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
        d_params, opt_d = optim.apply_update(nets.tx, g_d, d_params, opt_d)
        metrics_.update({"loss/d": l_d, "d/natural_real": p_real, "d/natural_fake": p_fake})

    # ---- C: MSE(C(G(x)), x) (always trained: it is also the evaluation's inverse-consistency probe)
    def c_loss_fn(p):
        return jnp.mean(inverse_loss(nets.c.apply({"params": p}, fake), x))

    l_c, g_c = jax.value_and_grad(c_loss_fn)(state.c)
    c_new, opt_c = optim.apply_update(nets.tx, g_c, state.c, state.opt_c)
    metrics_["loss/inverse"] = l_c
    metrics_["train/psnr_to_target"] = jnp.mean(metrics.psnr(jnp.clip(out, 0, 1), target))
    new = state.replace(
        step=state.step + 1,
        g=g_new,
        g_stats=g_stats,
        d=d_params,
        c=c_new,
        opt_g=opt_g,
        opt_d=opt_d,
        opt_c=opt_c,
    )
    return new, metrics_
