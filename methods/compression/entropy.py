"""Entropy models of learned compression: GDN, the factorized prior and the Gaussian conditional.

Following Ballé et al. 2017 ("End-to-end optimized image compression") and
2018 ("Variational image compression with a scale hyperprior"), with the
parametrisation CompressAI uses (for its facts only):

* ``GDN``: y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²) (inverse: × instead of /),
  β and γ kept non-negative by a squared, lower-bounded reparametrisation.
* ``FactorizedPrior``: one non-parametric density per channel, its CDF a
  small monotone network (filters 3-3-3). Its ``quantiles`` (the 1e-9 tails
  and the median of each channel) are *auxiliary* parameters: they are fitted
  only by ``aux_loss`` and trained through their own optax partition
  (``is_aux``). They set the quantisation offset (ŷ = round(y − median) +
  median) and the support of the coding tables.
* ``gaussian_likelihood``: P(ŷ | σ) = Φ((½ − |ŷ|)/σ) − Φ((−½ − |ŷ|)/σ), zero
  mean, σ lower-bounded at 0.11.

Likelihoods are lower-bounded at 1e-9 so −log₂ stays finite; all bounds use
``lower_bound`` (gradient passes where it pushes the value back up).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LIKELIHOOD_BOUND = 1e-9
SCALE_BOUND = 0.11


@jax.custom_vjp
def _lower_bound(x, bound):
    return jnp.maximum(x, bound)


def _lb_fwd(x, bound):
    return jnp.maximum(x, bound), (x, bound)


def _lb_bwd(res, g):
    x, bound = res
    pass_through = (x >= bound) | (g < 0)
    return (pass_through.astype(g.dtype) * g, jnp.zeros_like(bound))


_lower_bound.defvjp(_lb_fwd, _lb_bwd)


def lower_bound(x, bound: float):
    """max(x, bound) whose gradient also flows below the bound when it points upwards."""
    return _lower_bound(x, jnp.asarray(bound, x.dtype))


def round_ste(x):
    """round(x) forward, identity gradient (straight-through)."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


class GDN(nn.Module):
    """Generalized divisive normalization over the channel axis (NHWC); ``inverse`` for IGDN."""

    inverse: bool = False
    beta_min: float = 1e-6
    gamma_init: float = 0.1
    reparam_offset: float = 2.0**-18

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        pedestal = self.reparam_offset**2
        beta_p = self.param("beta", lambda k, s: jnp.sqrt(jnp.ones(s) + pedestal), (c,))
        gamma_p = self.param("gamma", lambda k, s: jnp.sqrt(self.gamma_init * jnp.eye(s[0]) + pedestal), (c, c))
        beta = lower_bound(beta_p, math.sqrt(self.beta_min + pedestal)) ** 2 - pedestal
        gamma = lower_bound(gamma_p, self.reparam_offset) ** 2 - pedestal
        norm = beta + jnp.einsum("...j,ij->...i", x * x, gamma)
        return x * jnp.sqrt(norm) if self.inverse else x * jax.lax.rsqrt(norm)


def _uniform(lo, hi):
    return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, lo, hi)


class FactorizedPrior(nn.Module):
    """Ballé 2017's per-channel non-parametric density of a latent (NHWC), with learned quantiles."""

    channels: int
    filters: tuple[int, ...] = (3, 3, 3)
    init_scale: float = 10.0
    tail_mass: float = 1e-9

    def setup(self):
        dims = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        c = self.channels
        self.matrices = [
            self.param(
                f"matrix{i}",
                nn.initializers.constant(math.log(math.expm1(1.0 / scale / dims[i + 1]))),
                (c, dims[i + 1], dims[i]),
            )
            for i in range(len(dims) - 1)
        ]
        self.biases = [self.param(f"bias{i}", _uniform(-0.5, 0.5), (c, dims[i + 1], 1)) for i in range(len(dims) - 1)]
        self.factors = [
            self.param(f"factor{i}", nn.initializers.zeros, (c, dims[i + 1], 1)) for i in range(len(self.filters))
        ]
        init = np.tile(np.array([-self.init_scale, 0.0, self.init_scale], np.float32), (c, 1, 1))
        self.quantiles = self.param("quantiles", lambda k, s: jnp.asarray(init), (c, 1, 3))

    def _logits_cumulative(self, v, stop_gradient: bool = False):
        """The CDF's logit at v [C, 1, N] (a monotone function of v, per channel)."""
        sg = jax.lax.stop_gradient if stop_gradient else (lambda a: a)
        h = v
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            h = jnp.matmul(jax.nn.softplus(sg(m)), h) + sg(b)
            if i < len(self.factors):
                h = h + jnp.tanh(sg(self.factors[i])) * jnp.tanh(h)
        return h

    def _likelihood_cn(self, v):
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        sign = jax.lax.stop_gradient(-jnp.sign(lower + upper))
        return jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))

    def __call__(self, y):
        """Likelihood of each element of the (noisy or quantized) latent y (NHWC), lower-bounded."""
        n, h, w, c = y.shape
        v = jnp.transpose(y, (3, 0, 1, 2)).reshape(c, 1, -1)
        lik = self._likelihood_cn(v).reshape(c, n, h, w).transpose(1, 2, 3, 0)
        return lower_bound(lik, LIKELIHOOD_BOUND)

    def medians(self):
        return jax.lax.stop_gradient(self.quantiles[:, 0, 1])

    def quantile_range(self):
        """(lower tail, upper tail) of each channel, relative to its median."""
        q = jax.lax.stop_gradient(self.quantiles[:, 0, :])
        return q[:, 0] - q[:, 1], q[:, 2] - q[:, 1]

    def aux_loss(self):
        """Σ |logit CDF(quantiles) − target|: fits the tails (mass tail_mass/2 each) and the median."""
        t = math.log(2.0 / self.tail_mass - 1.0)
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return jnp.sum(jnp.abs(logits - jnp.array([-t, 0.0, t], jnp.float32)))

    def quantize(self, y):
        """Integer symbols round(y − median) (NHWC, int32) for coding."""
        return jnp.round(y - self.medians()).astype(jnp.int32)

    def dequantize(self, symbols):
        return symbols.astype(jnp.float32) + self.medians()

    def pmf_table(self, lo, length: int):
        """[C, length] probabilities of the symbols lo..lo + length − 1 (value = symbol + median)."""
        q = lo + jnp.arange(length, dtype=jnp.float32)
        v = (q[None, :] + self.medians()[:, None])[:, None, :]
        return self._likelihood_cn(v)[:, 0, :]


def gaussian_likelihood(y, scales):
    """Zero-mean Gaussian mass of the unit bin around y, per element, lower-bounded (σ ≥ 0.11)."""
    s = lower_bound(scales, SCALE_BOUND)
    v = jnp.abs(y)
    upper = 0.5 * jax.scipy.special.erfc(-(0.5 - v) / (s * math.sqrt(2.0)))
    lower = 0.5 * jax.scipy.special.erfc(-(-0.5 - v) / (s * math.sqrt(2.0)))
    return lower_bound(upper - lower, LIKELIHOOD_BOUND)


def bits(likelihoods) -> jax.Array:
    """−Σ log₂ p per example (sums all but the batch axis)."""
    return -jnp.sum(jnp.log2(likelihoods), axis=tuple(range(1, likelihoods.ndim)))


def is_aux(path) -> bool:
    """Whether a parameter (a tree path) is an auxiliary quantile parameter."""
    return any(getattr(k, "key", None) == "quantiles" for k in path)
