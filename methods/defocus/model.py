"""DMENet: defocus-map estimation with domain adaptation (patent 002; Lee et al., CVPR 2019).

Four networks, trained together; only B is used at test time:

    I_S (synthetic) ─┐
    I_R (real)      ─┼─► B: VGG encoder → U-Net decoder (aux head per level)
    I_B (masked)    ─┘        → domain feature (first full-res 64-ch) → 7 res blocks → σ-map
                                   │                                     │
                       D(feature) ◄┘ synthetic=1 / real=0        S(map) ◄┘ 1x1 convs → blur logit
                                                          C = frozen VGG conv4_4 of (map, y)

The VGG is `common.pretrained.vgg`'s backbone: ImageNet VGG-16 by default (its block ends
conv3_3 / conv4_3 / conv5_3 stand in for VGG-19's conv3_4 / conv4_4 / conv5_4),
or the authors' VGG-19 with `vgg19_weights`.

Losses (one function per equation, weights applied in the step):
    L_B   = mean (B(I_S) − y)² + λ_aux Σ_ℓ mean (B_ℓ(I_S) − y_ℓ)²     Eqs. 2-3
    L_D   = −log D(f_S) − log(1 − D(f_R))                           Eq. 4
    L_adv = −log D(f_R)                                             Eq. 5
    L_S   = mean (sigmoid(S(B(I_B))) − b)²                           Eq. 6
    L_C   = mean (φ(B(I_S)) − φ(y))²                                Eq. 7
    L_main = L_B + λ_adv L_adv + λ_S L_S + λ_C L_C   (trains B and S)
A weight of 0 switches its term off, with its network and stream (the Fig. 6
ablations: `uses`). The thin-lens data is in `data`, evaluation in `evaluate`.
One D step, then one main step per batch; B's forward pass is shared by both
(its output does not depend on D), which saves a third of the compute.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from common.nn import conv, layers
from common.pretrained import vgg
from common.train import optim, precision

# ----------------------------------------------------------------------------- networks

DECODER = (
    (5, 512),
    (4, 256),
    (3, 128),
    (2, 64),
    (1, 64),
)  # (level, channels); level ℓ is 1/2^(ℓ-1) res
SKIPS = {4: "conv4_4", 3: "conv3_4", 2: "conv2_2", 1: "conv1_2"}


def _w(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class BlurNet(nn.Module):
    """B: returns (σ-map (N,H,W,1), [aux maps level 5..1], domain feature (N,H,W,64·w)).

    The encoder is the VGG `backbone` (trainable); `width` scales the decoder.
    """

    backbone: vgg.Backbone
    width: float = 1.0
    n_res: int = 7

    @nn.compact
    def __call__(self, x, train: bool):
        bb = self.backbone
        feats = bb.module("conv5_4", name="encoder")(x)
        h, aux = feats[bb.layer("conv5_4")], []
        for level, ch in DECODER:
            if level in SKIPS:
                h = jnp.concatenate([layers.upsample_nearest(h), feats[bb.layer(SKIPS[level])]], axis=-1)
            for i in range(3):
                h = layers.ConvBNAct(_w(ch, self.width), name=f"dec{level}_{i}")(h, train)
            aux.append(nn.sigmoid(conv.Conv(1, (3, 3), name=f"aux{level}")(h)))
        feature = h
        for i in range(self.n_res):
            h = layers.ResBlock(_w(64, self.width), name=f"res{i}")(h, train)
        h = layers.ConvBNAct(_w(64, self.width), name="head0")(h, train)
        h = layers.ConvBNAct(_w(32, self.width), name="head1")(h, train)
        out = nn.sigmoid(conv.Conv(1, (3, 3), name="out")(h))
        return out, aux, feature


class DomainNet(nn.Module):
    """D: five 4x4 stride-2 convs → patch logits (synthetic = 1, real = 0)."""

    width: float = 1.0

    @nn.compact
    def __call__(self, f):
        for c in (64, 128, 256, 512):
            f = layers.lrelu(conv.Conv(_w(c, self.width), (4, 4), strides=2)(f))
        return conv.Conv(1, (4, 4), strides=2)(f)


class SharpNet(nn.Module):
    """S: 1x1 convs only, so its gradient cannot smear B's map spatially → blur logit."""

    @nn.compact
    def __call__(self, m):
        for c in (64, 64, 64, 32, 32, 32, 16, 16, 16):
            m = layers.lrelu(conv.Conv(c, (1, 1))(m))
        return conv.Conv(1, (1, 1))(m)


# ----------------------------------------------------------------------------- losses (unreduced: per example)


def _mean_hw(x):
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def blur_loss(pred, y):
    """Seed Eq. 2, first term: (1/WH) Σ (B(I_S) − y)²."""
    return _mean_hw(jnp.square(pred - y))


def aux_loss(aux_preds, y):
    """Seed Eq. 3: Σ_ℓ (1/W_ℓH_ℓ) Σ (B_ℓ(I_S) − y_ℓ)², y_ℓ nearest-down-sampled."""
    total = 0.0
    for p in aux_preds:
        total = total + _mean_hw(jnp.square(p - layers.nearest_down(y, y.shape[1] // p.shape[1])))
    return total


def domain_loss(logits_syn, logits_real):
    """Seed Eq. 4 with z = 1 for synthetic and z = 0 for real features: −log D(f_S) − log(1 − D(f_R))."""
    return _mean_hw(optax.sigmoid_binary_cross_entropy(logits_syn, 1.0)) + _mean_hw(
        optax.sigmoid_binary_cross_entropy(logits_real, 0.0)
    )


def adversarial_loss(logits_real):
    """Seed Eq. 5: −log D(B_last(I_R)) — real features made to look synthetic."""
    return _mean_hw(optax.sigmoid_binary_cross_entropy(logits_real, 1.0))


def sharpness_loss(logits, mask, *, kind: str = "mse"):
    """Seed Eq. 6: (1/WH) Σ ‖sigmoid(S(B(I_B))) − b‖²  ('bce': the authors' code)."""
    if kind == "mse":
        return _mean_hw(jnp.square(nn.sigmoid(logits) - mask))
    if kind == "bce":
        return _mean_hw(optax.sigmoid_binary_cross_entropy(logits, mask))
    raise ValueError(f"model.sharp_loss must be 'mse' or 'bce', got {kind!r}")


def content_loss(phi_pred, phi_y):
    """Seed Eq. 7: (1/W_ℓH_ℓ) Σ (φ_ℓ(B(I_S)) − φ_ℓ(y))² (mean over channels too)."""
    return _mean_hw(jnp.square(phi_pred - phi_y))


def _rgb(m):
    return jnp.repeat(m, 3, axis=-1)


# ----------------------------------------------------------------------------- state and step


@flax.struct.dataclass
class State:
    step: jax.Array
    b: Any  # params of B
    b_stats: Any  # BatchNorm statistics of B
    d_dom: Any  # params of D
    sharp: Any  # params of S
    opt_b: Any
    opt_d_dom: Any
    opt_sharp: Any


class Nets:
    """Module definitions and optimizers (static: never pytree leaves)."""

    def __init__(self, config, backbone: vgg.Backbone):
        m = config.model
        spec = dataclasses.replace(backbone, variables=None)  # module fields must stay small and hashable
        self.b = precision.wrap(BlurNet(backbone=spec, width=m.width, n_res=m.n_res), config)
        self.d = precision.wrap(DomainNet(width=m.width), config)
        self.s = precision.wrap(SharpNet(), config)
        self.c = precision.wrap(backbone.module("conv4_4"), config)
        self.c_layer = backbone.layer("conv4_4")
        sched = optim.schedule(config.optim)
        self.tx = optim.adam_with_decay(config.optim)
        # B's VGG encoder may learn slower than its fresh decoder (fine-tuning an ImageNet trunk)
        mult = config.optim.encoder_lr_mult
        enc_tx = optax.adam(lambda step: sched(step) * mult, b1=config.optim.b1)
        labels = lambda params: {
            k: jax.tree.map(lambda _, k=k: "encoder" if k == "encoder" else "rest", v) for k, v in params.items()
        }  # noqa: E501
        self.tx_b = self.tx if mult == 1.0 else optax.multi_transform({"encoder": enc_tx, "rest": self.tx}, labels)


def init_state(key, nets: Nets, config, encoder_params=None) -> State:
    kb, kd, ks = jax.random.split(key, 3)
    n = config.data.crop
    vb = nets.b.init(kb, jnp.zeros((1, n, n, 3)), train=False)
    b_params = vb["params"]
    if encoder_params is not None:  # trainable encoder initialised from ImageNet VGG weights
        b_params = {**b_params, "encoder": encoder_params}
    feat_ch = _w(64, config.model.width)
    d_params = nets.d.init(kd, jnp.zeros((1, n, n, feat_ch)))["params"]
    s_params = nets.s.init(ks, jnp.zeros((1, n, n, 1)))["params"]
    return State(
        step=jnp.zeros((), jnp.int32),
        b=b_params,
        b_stats=vb["batch_stats"],
        d_dom=d_params,
        sharp=s_params,
        opt_b=nets.tx_b.init(b_params),
        opt_d_dom=nets.tx.init(d_params),
        opt_sharp=nets.tx.init(s_params),
    )


def uses(loss_cfg) -> dict[str, bool]:
    """Which optional terms (and their networks and streams) are on: those with a weight above 0."""
    return {k: loss_cfg[k] > 0 for k in ("aux", "adv", "sharp", "content")}


def train_step(state: State, batch: dict, key, frozen, *, nets: Nets, config):
    """One D step then one main (B + S) step. Pure; `key` is unused (no stochastic layers)."""
    del key
    lam, on = config.loss, uses(config.loss)
    x_s, y = batch["syn_image"], batch["syn_label"]
    streams = [x_s]
    if on["adv"]:
        streams.append(batch["real_image"])
    if on["sharp"]:
        streams.append(batch["masked_image"])
    n = x_s.shape[0]
    x_all = jnp.concatenate(streams, axis=0)

    def b_forward(b_params):
        outs, upd = nets.b.apply(
            {"params": b_params, "batch_stats": state.b_stats},
            x_all,
            train=True,
            mutable=["batch_stats"],
        )
        return outs, upd["batch_stats"]

    outs, b_vjp, b_stats = jax.vjp(b_forward, state.b, has_aux=True)
    metrics = {}

    # ---- D step (Eq. 4) on stopped features
    d_params, opt_d = state.d_dom, state.opt_d_dom
    if on["adv"]:
        f = jax.lax.stop_gradient(outs[2])

        def d_loss_fn(p):
            ls, lr = nets.d.apply({"params": p}, f[:n]), nets.d.apply({"params": p}, f[n : 2 * n])
            acc = 0.5 * (jnp.mean(ls > 0) + jnp.mean(lr < 0))
            return jnp.mean(domain_loss(ls, lr)), acc

        (l_d, d_acc), g_d = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
        d_params, opt_d = optim.apply_update(nets.tx, g_d, d_params, opt_d)
        metrics.update({"loss/domain": l_d, "domain/accuracy": d_acc})

    # ---- main step: B (through its VJP) and S, against the updated D
    def main_loss_fn(o, s_params):
        out, aux, feat = o
        terms = {"blur": jnp.mean(blur_loss(out[:n], y))}
        total = terms["blur"]
        if on["aux"]:
            terms["aux"] = jnp.mean(aux_loss([a[:n] for a in aux], y))
            total += lam.aux * terms["aux"]
        if on["adv"]:
            terms["adv"] = jnp.mean(adversarial_loss(nets.d.apply({"params": d_params}, feat[n : 2 * n])))
            total += lam.adv * terms["adv"]
        if on["sharp"]:
            i0 = 2 * n if on["adv"] else n
            logits = nets.s.apply({"params": s_params}, out[i0 : i0 + n])
            terms["sharp"] = jnp.mean(sharpness_loss(logits, batch["masked_mask"], kind=config.model.sharp_loss))
            total += lam.sharp * terms["sharp"]
        if on["content"]:
            c = {"params": frozen["vgg"]["params"]}
            phi_p = nets.c.apply(c, _rgb(out[:n]))[nets.c_layer]
            phi_y = jax.lax.stop_gradient(nets.c.apply(c, _rgb(y))[nets.c_layer])
            terms["content"] = jnp.mean(content_loss(phi_p, phi_y))
            total += lam.content * terms["content"]
        return total, terms

    (l_main, terms), (g_outs, g_s) = jax.value_and_grad(main_loss_fn, argnums=(0, 1), has_aux=True)(outs, state.sharp)
    (g_b,) = b_vjp(g_outs)
    b_params, opt_b = optim.apply_update(nets.tx_b, g_b, state.b, state.opt_b)
    s_params, opt_s = state.sharp, state.opt_sharp
    if on["sharp"]:
        s_params, opt_s = optim.apply_update(nets.tx, g_s, s_params, opt_s)

    metrics.update({f"loss/{k}": v for k, v in terms.items()})
    metrics["loss/main"] = l_main
    metrics["map/mae"] = jnp.mean(jnp.abs(outs[0][:n] - y))
    new = state.replace(
        step=state.step + 1,
        b=b_params,
        b_stats=b_stats,
        d_dom=d_params,
        sharp=s_params,
        opt_b=opt_b,
        opt_d_dom=opt_d,
        opt_sharp=opt_s,
    )
    return new, metrics


def predict_maps(state: State, images, *, nets: Nets):
    """B only (test time): defocus maps σ/σ_max of NHWC images whose sides are multiples of 16."""
    out, _, _ = nets.b.apply({"params": state.b, "batch_stats": state.b_stats}, images, train=False)
    return out
