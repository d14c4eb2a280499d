"""Learned image compression stable under successive re-compression (patent 004).

    I0 ──f_e──► y ──f_q──► F0 ──f_d──► x̂ ──f_rc──► I1 ──f_e──► ──f_q──► F1
                │                                (same encoder parameters)
                └──(hyperprior) h_a ► z ► f_q ► h_s ► σ   (scales of p(ŷ | ẑ))

f_e: 4 strided 5x5 convs with GDN; f_d: 4 transposed convs with IGDN
(Ballé 2018, CompressAI's (N, M)). With mean removal (the config's default)
each image's mean colour μ is taken out before f_e, sent on 8 bits per
channel in the header, and f_d's output is re-centred on it, so a colour
cast of the whole image cannot happen; f_q: additive U(−½, ½) noise in training
(from an explicit key), rounding otherwise (around the channel medians for a
factorized prior); f_rc: round to 8 bits and clip (straight-through in
training).

Losses (patent Eqs. 1-2 / 5-6; one function each):
    L_R     = −(Σ log₂ p(ỹ) + Σ log₂ p(z̃)) / (H·W)      bits per pixel
    L_D     = MSE(x̂, I0) on [0, 1]                      (λ1 = λ·255², CompressAI's λ)
    L_FI    = ‖F0 − F1‖ as a mean square ('mse', the patent's [0078] example)
              or the plain L2 norm per image ('l2', Eq. 5 verbatim)
    L_total = L_R + λ1·L_D + λ2·L_FI                     (λ2 = 0: the plain model)
In training F0 = y + u and F1 = f_e(I1) + u with the SAME noise u, so
F0 − F1 = f_e(I0) − f_e(I1) exactly. Switches that follow the test-time chain
instead (off by default): ``loss.fi_quant='ste'`` (F0, F1 through straight-through
rounding, the patent's f_q), ``loss.fi_passes=2`` (L_FI also after a second pass
through f_e∘f_rc∘f_d) and ``model.mixed_quantization`` (f_d trained on rounded
latents). The factorized prior's quantiles are fitted by their own aux loss
through a separate optax partition.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from common.errors import ConfigError
from common.quality import metrics
from common.train import optim, precision
from methods.compression import coding_tables, entropy
from methods.compression.networks import Analysis, HyperAnalysis, HyperSynthesis, Synthesis

PRIORS = ("factorized", "hyperprior", "meanscale")


class Compressor(nn.Module):
    """f_e / f_d with a factorized prior on y, a scale hyperprior (factorized prior on z; y ~ N(0, σ(ẑ))) or a
    mean-scale hyperprior (Minnen et al. 2018 without context model: y ~ N(μ(ẑ), σ(ẑ)), symbols round(y − μ̂))."""

    prior: str = "hyperprior"
    n: int = 128
    m: int = 192
    mean_removal: bool = False  # code each image's mean colour on 8 bits beside the latents (see `dc`)
    # "mixed quantization" (Minnen & Singh 2020): f_d decodes straight-through rounded latents in training, as it
    # does at test time, while the rate term keeps the noisy ones
    mixed_quantization: bool = False
    dtype: Any = None  # the transforms' compute dtype (training only; the codec's model is float32)

    def setup(self):
        self.g_a = Analysis(self.n, self.m, self.dtype)
        self.g_s = Synthesis(self.n, self.dtype, final_bias=not self.mean_removal)
        if self.hyper:
            self.h_a = HyperAnalysis(self.n, self.dtype)
            self.h_s = HyperSynthesis(self.n, self.m, self.dtype, means=self.prior == "meanscale")
            self.entropy_z = entropy.FactorizedPrior(self.n)
        else:
            self.entropy_y = entropy.FactorizedPrior(self.m)

    @property
    def hyper(self) -> bool:
        """Whether y is coded conditionally on a hyper-latent z (hyperprior or meanscale)."""
        return self.prior != "factorized"

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (the total stride)."""
        return 64 if self.hyper else 16

    def _gaussian_params(self, z_hat):
        """(σ, μ) of p(y | ẑ): μ = 0 for the scale hyperprior."""
        out = self.h_s(z_hat)
        if self.prior == "meanscale":
            return out[..., : self.m], out[..., self.m :]
        return out, jnp.zeros_like(out)

    # -- mean removal (the image's DC on the side) -----------------------------------------------
    def dc(self, x, quantized: bool = False):
        """μ (B, 1, 1, 3): each image's mean colour (μ̂, on 8 bits, when `quantized`); 0 without mean removal.

        With mean removal f_e codes x − μ̂ and the decoder's output is re-centred on μ̂, so the mean colour
        survives coding exactly (up to clipping) whatever the transforms learned: 24 bits per image.
        Training uses the unrounded μ (≤ 1/510 away), which keeps the loss continuous in its input."""
        if not self.mean_removal:
            return jnp.zeros((x.shape[0], 1, 1, x.shape[-1]), jnp.float32)
        mu = jnp.mean(x, axis=(1, 2), keepdims=True)
        return jnp.round(mu * 255.0) / 255.0 if quantized else mu

    def _synthesis(self, y_hat, dc):
        x = self.g_s(y_hat)
        if not self.mean_removal:
            return x
        return x - jnp.mean(x, axis=(1, 2), keepdims=True) + dc

    # -- training (noisy quantization) ---------------------------------------------------------
    def __call__(self, x):
        """Noisy forward: {"y", "noise", "x_hat", "likelihoods"}; noise from the 'noise' RNG stream."""
        dc = self.dc(x)
        y = self.g_a(x - dc)
        u = jax.random.uniform(self.make_rng("noise"), y.shape, y.dtype, -0.5, 0.5)
        y_tilde = y + u
        mu = 0.0
        if self.hyper:
            z = self.h_a(y)
            z_tilde = z + jax.random.uniform(self.make_rng("noise"), z.shape, z.dtype, -0.5, 0.5)
            sigma, mu = self._gaussian_params(z_tilde)
            lik = {"y": entropy.gaussian_likelihood(y_tilde - mu, sigma), "z": self.entropy_z(z_tilde)}
        else:
            lik = {"y": self.entropy_y(y_tilde)}
        y_dec = entropy.round_ste(y - mu) + mu if self.mixed_quantization and self.hyper else y_tilde
        if self.mixed_quantization and not self.hyper:
            y_dec = self.round_latent(y)
        return {"y": y, "noise": u, "x_hat": self._synthesis(y_dec, dc), "likelihoods": lik}

    def round_latent(self, y):
        """ŷ as the codec forms it (round, around the medians for a factorized prior, around μ(ẑ) for the
        mean-scale prior), straight-through."""
        if self.prior == "meanscale":
            _, mu = self._gaussian_params(
                jax.lax.stop_gradient(self.entropy_z.dequantize(self.entropy_z.quantize(self.h_a(y))))
            )
            return entropy.round_ste(y - mu) + mu
        if self.prior == "hyperprior":
            return entropy.round_ste(y)
        med = self.entropy_y.medians()
        return entropy.round_ste(y - med) + med

    def decode_latent(self, y_hat, x):
        """f_d(ŷ) re-centred on x's (unrounded) mean colour: the synthesis of a training latent."""
        return self._synthesis(y_hat, self.dc(x))

    def analysis(self, x):
        """f_e (of x − μ with mean removal), as in training."""
        return self.g_a(x - self.dc(x))

    def aux_loss(self):
        return (self.entropy_z if self.hyper else self.entropy_y).aux_loss()

    # -- codec side (rounding; integer symbols) ------------------------------------------------
    def symbols(self, x):
        """Integer symbols of an image batch: {"y", "dc"} or {"y", "z", "dc"} (int32; latents NHWC, dc (B, 3)).

        For the mean-scale prior "y" is the float latent: its symbols round(y − μ̂) need the codec's
        fixed-point μ̂ (`codec.Codec.symbols`)."""
        dc = self.dc(x, quantized=True)
        return self.latent_symbols(self.g_a(x - dc), jnp.round(dc[:, 0, 0, :] * 255.0).astype(jnp.int32))

    def analysis_window(self, x, dc_symbols):
        """f_e of x − μ̂ for the 8-bit mean colour `dc_symbols` (B, 3): one window of tiled encoding."""
        return self.g_a(x - dc_symbols[:, None, None, :].astype(jnp.float32) / 255.0)

    def latent_symbols(self, y, dc_symbols):
        """The symbols (as `symbols`) of f_e's output y and the mean colour's."""
        out = {"dc": dc_symbols}
        if self.prior == "meanscale":
            return out | {"y": y, "z": self.entropy_z.quantize(self.h_a(y))}
        if self.prior == "hyperprior":
            return out | {"y": jnp.round(y).astype(jnp.int32), "z": self.entropy_z.quantize(self.h_a(y))}
        return out | {"y": self.entropy_y.quantize(y)}

    def latent(self, y_symbols):
        """ŷ from its symbols (adds the medians back for a factorized prior; for the mean-scale prior the codec
        passes ŷ = symbols + μ̂ itself)."""
        if self.hyper:
            return y_symbols.astype(jnp.float32)
        return self.entropy_y.dequantize(y_symbols)

    def synthesis(self, y_symbols):
        """f_d(ŷ) before the mean colour is put back (float, unclipped): what tiled decoding runs per window."""
        return self.g_s(self.latent(y_symbols))

    def decode_symbols(self, y_symbols, dc_symbols):
        """f_d(ŷ) (float, unclipped), re-centred on the coded mean colour with mean removal."""
        dc = dc_symbols[:, None, None, :].astype(jnp.float32) / 255.0
        return self._synthesis(self.latent(y_symbols), dc)

    def scales(self, z_symbols):
        """σ of p(ŷ | ẑ), lower-bounded as in the likelihood (hyper priors only)."""
        sigma, _ = self._gaussian_params(self.entropy_z.dequantize(z_symbols))
        return entropy.lower_bound(sigma, entropy.SCALE_BOUND)

    def quantized_likelihoods(self, syms):
        """Likelihoods of the rounded latents: what the codec's estimated bits are computed from (for the
        mean-scale prior "y" holds the symbols round(y − μ̂), coded under zero-mean Gaussians)."""
        if self.hyper:
            y_hat = syms["y"].astype(jnp.float32)
            return {
                "y": entropy.gaussian_likelihood(y_hat, self.scales(syms["z"])),
                "z": self.entropy_z(self.entropy_z.dequantize(syms["z"])),
            }
        return {"y": self.entropy_y(self.latent(syms["y"]))}

    def pmf_tables(self, lo, length: int, which: str):
        """Coding tables [C, length] of the factorized prior of `which` ('y' or 'z') over lo..lo+length−1."""
        return self._prior(which).pmf_table(lo, length)

    def quantile_support(self, which: str):
        return self._prior(which).quantile_range()

    def _prior(self, which: str) -> entropy.FactorizedPrior:
        return self.entropy_z if which == "z" else self.entropy_y


# ----------------------------------------------------------------------------- losses (per example)


def rate_loss(likelihoods: dict, num_pixels: int) -> jax.Array:
    """L_R: −Σ log₂ p over every latent (y, and z for a hyperprior) per image pixel, per example."""
    return sum(entropy.bits(v) for v in likelihoods.values()) / num_pixels


DISTORTIONS = ("mse", "ms_ssim")
MS_SSIM_MIN_SIDE = metrics.ms_ssim_min_side()  # 176: five dyadic scales of an 11-pixel window


def distortion_loss(x_hat, x, kind: str = "mse") -> jax.Array:
    """L_D per example (images on [0, 1]): the mean squared error over pixels and channels ('mse'), or
    1 − MS-SSIM ('ms_ssim', RGB, data range 1, as CompressAI trains its MS-SSIM models)."""
    if kind == "mse":
        return jnp.mean((x_hat - x) ** 2, axis=(1, 2, 3))
    if kind == "ms_ssim":
        return 1.0 - metrics.ms_ssim(x_hat, x, floor=1e-6)
    raise ConfigError(f"config loss.distortion={kind!r}: use {' or '.join(map(repr, DISTORTIONS))}")


def feature_identity_loss(f0, f1, norm: str = "mse") -> jax.Array:
    """L_FI(F0, F1) per example: mean square ('mse') or the L2 norm ‖F0 − F1‖₂ ('l2')."""
    d = (f0 - f1).reshape(f0.shape[0], -1)
    if norm == "mse":
        return jnp.mean(d * d, axis=1)
    if norm == "l2":
        return jnp.sqrt(jnp.sum(d * d, axis=1) + 1e-12)
    raise ConfigError(f"config loss.fi_norm={norm!r}: use 'mse' or 'l2'")


def round_clip(x):
    """f_rc: to 8 bits and clipped to [0, 1] (straight-through rounding)."""
    return entropy.round_ste(jnp.clip(x, 0.0, 1.0) * 255.0) / 255.0


# ----------------------------------------------------------------------------- training


@flax.struct.dataclass
class State:
    step: jax.Array
    params: Any
    opt_state: Any
    tables: Any  # integer coding tables (coding_tables), refreshed by `finalize` before every checkpoint


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam on the networks (global-norm clipped) and, separately, Adam on the prior's quantiles."""
    o = config.optim
    main = optax.chain(
        optax.clip_by_global_norm(o.clip) if o.clip else optax.identity(),
        optax.adam(optax.piecewise_constant_schedule(o.lr, {int(o.decay_at * config.total_steps): o.decay})),
    )

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda p, _: "aux" if entropy.is_aux(p) else "main", params)

    return optax.multi_transform({"main": main, "aux": optax.adam(o.aux_lr)}, labels)


def compressor(m) -> Compressor:
    """The model of a config's `model` block (a ConfigDict, or a run's config.json dict; runs from before mean
    removal have no such key and are bare models)."""
    return Compressor(
        prior=m["prior"],
        n=m["n"],
        m=m["m"],
        mean_removal=m.get("mean_removal", False),
        mixed_quantization=m.get("mixed_quantization", False),
    )


class Nets:
    """The model definition and its optimizer (static: never pytree leaves)."""

    def __init__(self, config):
        self.config = config
        m = config.model
        self.model = compressor(m)
        # the training forward passes: the same parameters, convolutions in config.precision
        self.train_model = self.model.clone(dtype=precision.compute_dtype(config))
        self.tx = make_optimizer(config)


def init_state(key, nets: Nets, config) -> State:
    n = 2 * nets.model.multiple
    kp, kn = jax.random.split(key)
    params = nets.model.init({"params": kp, "noise": kn}, jnp.zeros((1, n, n, 3)))["params"]
    channels = nets.model.n if nets.model.hyper else nets.model.m
    return State(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=nets.tx.init(params),
        tables=coding_tables.empty(channels),
    )


def integer_tables(model: Compressor, params) -> dict:
    """The model's integer coding tables (methods.compression.coding_tables) from its factorized prior. Pure."""
    which = "z" if model.hyper else "y"
    n = 2 * coding_tables.TAIL + 1
    rows = model.apply({"params": params}, jnp.float32(-coding_tables.TAIL), n, which, method=Compressor.pmf_tables)
    return coding_tables.finalize(rows)


def finalize(state: State, *, nets: Nets) -> State:
    """The state with its integer coding tables recomputed from its parameters (pure; the 'update' step)."""
    return state.replace(tables=integer_tables(nets.model, state.params))


def losses(params, x, key, *, nets: Nets):
    """(L_total + aux, per-term metrics) of a batch. L_FI's second encoder pass reuses `params`."""
    cfg = nets.config.loss
    model = nets.train_model
    out = model.apply({"params": params}, x, rngs={"noise": key})
    num_pixels = x.shape[1] * x.shape[2]
    terms = {
        "rate": jnp.mean(rate_loss(out["likelihoods"], num_pixels)),
        "distortion": jnp.mean(distortion_loss(out["x_hat"], x, cfg.get("distortion", "mse"))),
    }
    total = terms["rate"] + cfg.lambda1 * terms["distortion"]
    if cfg.lambda2:
        terms["feature_identity"] = _fi_term(model, params, x, out, cfg)
        total = total + cfg.lambda2 * terms["feature_identity"]
    aux = nets.model.apply({"params": params}, method=Compressor.aux_loss)
    metrics_ = {f"loss/{k}": v for k, v in terms.items()}
    metrics_.update(
        {
            "loss/total": total,
            "loss/aux": aux,
            "train/bpp": terms["rate"],
            "train/psnr": -10.0 * jnp.log10(jnp.maximum(jnp.mean(distortion_loss(out["x_hat"], x)), 1e-10)),
        }
    )
    if cfg.get("distortion", "mse") == "ms_ssim":
        metrics_["train/ms_ssim"] = 1.0 - terms["distortion"]
    return total + aux, (metrics_, out["x_hat"])


FI_QUANT = ("noise", "ste", "center")


def _fi_term(model: Compressor, params, x, out: dict, cfg) -> jax.Array:
    """L_FI of a batch. F0 = f_q(y) and F_k = f_q(f_e(I_k)), I_k = f_rc∘f_d(F_{k−1}), for k = 1..``fi_passes``
    (the mean of the k terms ‖F0 − F_k‖). f_q is the shared noise sample (``fi_quant='noise'``: then
    F0 − F1 = f_e(I0) − f_e(I1)) or the codec's rounding, straight-through (``'ste'``: the patent's f_q, which
    sees the symbol flips of successive compression). ``'center'``: F0 = ŷ, the codec's symbols (fixed), I1 is
    decoded from ŷ (straight-through), and F_k = f_e(I_k) unrounded, so the re-encoding is pulled to the centre
    of ŷ's quantization bin, where the next rounding leaves it (not merely to y, which may sit at a bin's edge)."""
    quant = cfg.get("fi_quant", "noise")
    if quant not in FI_QUANT:
        raise ConfigError(f"config loss.fi_quant={quant!r}: use {' or '.join(map(repr, FI_QUANT))}")

    def rounded(y):
        return model.apply({"params": params}, y, method=Compressor.round_latent)

    def f_q(y):
        return {"ste": rounded, "center": lambda v: v}.get(quant, lambda v: v + out["noise"])(y)

    def decode(latent):
        return round_clip(model.apply({"params": params}, latent, x, method=Compressor.decode_latent))

    if quant == "center":
        y_hat = rounded(out["y"])
        f0 = jax.lax.stop_gradient(y_hat)
        image = round_clip(out["x_hat"]) if model.mixed_quantization else decode(y_hat)
    else:
        f0, image = f_q(out["y"]), round_clip(out["x_hat"])
    terms, fk = [], None
    for _ in range(int(cfg.get("fi_passes", 1))):
        if fk is not None:  # the next pass decodes the previous one's latents through the whole chain
            image = decode(rounded(fk) if quant == "center" else fk)
        fk = f_q(model.apply({"params": params}, image, method=Compressor.analysis))
        terms.append(jnp.mean(feature_identity_loss(f0, fk, cfg.fi_norm)))
    return sum(terms) / len(terms)


def train_step(state: State, batch: dict, key, frozen, *, nets: Nets):
    """One Adam step on L_total (networks) and the aux loss (quantiles). Pure; `key` draws the noise u."""
    del frozen
    (_, (metrics_, _)), grads = jax.value_and_grad(losses, has_aux=True)(state.params, batch["image"], key, nets=nets)
    params, opt_state = optim.apply_update(nets.tx, grads, state.params, state.opt_state)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics_
