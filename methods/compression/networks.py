"""The transforms of the learned codec: f_e (analysis), f_d (synthesis), h_a and h_s.

f_e: 4 strided 5x5 convs with GDN; f_d: 4 transposed convs with IGDN (Ballé 2018, CompressAI's (N, M)); h_a,
h_s: the hyperprior's 3-layer transforms. The transposed convolutions are `ConvTranspose`: flax's
``nn.ConvTranspose`` (stride 2, 'SAME', kernel not flipped; the same parameters, names and initialisation)
computed as one stride-1 convolution to s·s phases of the output followed by depth-to-space, instead of XLA's
convolution over the zero-dilated input, which spends 3 of every 4 multiply-adds on inserted zeros
(``benchmarks/codec_time.py``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from common.nn import conv
from methods.compression import coding_tables, entropy


def subpixel_taps(k: int, s: int) -> tuple[int, list[list[tuple[int, int]]]]:
    """flax's 'SAME' transposed convolution (kernel k, stride s) as a correlation with the input: (lowest input
    offset d0, and per output phase a = 0..s−1 the (input offset d, kernel tap t) pairs) such that
    out[s·p + a] = Σ x[p + d] · kernel[t].

    lax.conv_transpose dilates x by s, pads it by pad_a before (pad_a = k − 1 if s > k − 1, else ⌈(k + s − 2)/2⌉)
    and correlates with the kernel: out[o] = Σ_t dilated[o + t − pad_a] · kernel[t], and dilated[j] = x[j / s]
    for j ≡ 0 (mod s). With o = s·p + a that is x[p + d] for t = s·d + pad_a − a."""
    pad_a, _ = coding_tables.transpose_padding(k, s)
    phases = []
    for a in range(s):
        phases.append([(d, t) for d in range(-k, k + 1) if 0 <= (t := s * d + pad_a - a) < k])
    d0 = min(d for ph in phases for d, _ in ph)
    return d0, phases


class ConvTranspose(nn.Module):
    """nn.ConvTranspose(features, (k, k), strides=(s, s), padding='SAME') on NHWC, as a sub-pixel convolution."""

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        k, s, co = self.kernel_size, self.stride, self.features
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], co))
        bias = self.param("bias", nn.initializers.zeros, (co,)) if self.use_bias else None
        dtype = self.dtype or jnp.float32
        d0, phases = subpixel_taps(k, s)
        size = max(d for ph in phases for d, _ in ph) - d0 + 1
        # sub-pixel kernel (size, size, C_in, s·s·C_out): output phase (a, b) in channels (a·s + b)·C_out + c
        index = np.full((size, size, s * s), k * k, np.int32)  # k·k: a zero tap
        for a, ph_a in enumerate(phases):
            for b, ph_b in enumerate(phases):
                for du, tu in ph_a:
                    for dv, tv in ph_b:
                        index[du - d0, dv - d0, a * s + b] = tu * k + tv
        taps = jnp.concatenate([kernel.reshape(k * k, *kernel.shape[2:]), jnp.zeros((1, *kernel.shape[2:]))])
        sub = taps[index].transpose(0, 1, 3, 2, 4).reshape(size, size, x.shape[-1], s * s * co)
        pad = (-d0, size - 1 + d0)
        y = conv.conv_general_dilated(
            x.astype(dtype), sub.astype(dtype), (1, 1), (pad, pad), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        n, h, w, _ = y.shape
        y = y.reshape(n, h, w, s, s, co).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * s, w * s, co)
        return y if bias is None else y + bias.astype(y.dtype)


def _conv(features, k, stride=1, dtype=None, name=None):
    return conv.Conv(features, (k, k), strides=(stride, stride), padding="SAME", dtype=dtype, name=name)


def _deconv(features, k, stride=2, dtype=None, use_bias=True, name=None):
    return ConvTranspose(features, k, stride, use_bias=use_bias, dtype=dtype, name=name)


# The transforms' convolutions compute in `dtype` (None: float32; common.train.precision); GDN and every output
# are float32, so the entropy model and the losses never see bf16.


class Analysis(nn.Module):
    n: int
    m: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        h = x
        for i in range(3):
            h = entropy.GDN(name=f"gdn{i}")(_conv(self.n, 5, 2, self.dtype)(h).astype(jnp.float32))
        return _conv(self.m, 5, 2, self.dtype)(h).astype(jnp.float32)


class Synthesis(nn.Module):
    n: int
    dtype: Any = None
    final_bias: bool = True  # False with mean removal: the re-centring cancels it (a gradient of pure rounding noise)

    @nn.compact
    def __call__(self, y):
        h = y
        for i in range(3):
            h = entropy.GDN(inverse=True, name=f"igdn{i}")(_deconv(self.n, 5, dtype=self.dtype)(h).astype(jnp.float32))
        return _deconv(3, 5, dtype=self.dtype, use_bias=self.final_bias)(h).astype(jnp.float32)


class HyperAnalysis(nn.Module):
    n: int
    dtype: Any = None

    @nn.compact
    def __call__(self, y):
        h = nn.relu(_conv(self.n, 3, dtype=self.dtype)(jnp.abs(y)))
        h = nn.relu(_conv(self.n, 5, 2, self.dtype)(h))
        return _conv(self.n, 5, 2, self.dtype)(h).astype(jnp.float32)


class HyperSynthesis(nn.Module):
    """h_s: σ (M channels, after a ReLU) or, with `means` (the mean-scale prior), σ and μ (2M, no final ReLU)."""

    n: int
    m: int
    dtype: Any = None
    means: bool = False

    @nn.compact
    def __call__(self, z):
        # named as the codec's fixed-point copy of h_s reads them (coding_tables.HYPER_SYNTHESIS_LAYERS)
        (up0, _), (up1, _), (out, _) = coding_tables.HYPER_SYNTHESIS_LAYERS
        h = nn.relu(_deconv(self.n, 5, dtype=self.dtype, name=up0)(z))
        h = nn.relu(_deconv(self.n, 5, dtype=self.dtype, name=up1)(h))
        if self.means:
            return _conv(2 * self.m, 3, dtype=self.dtype, name=out)(h).astype(jnp.float32)
        return nn.relu(_conv(self.m, 3, dtype=self.dtype, name=out)(h)).astype(jnp.float32)
