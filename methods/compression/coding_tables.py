"""Platform-independent entropy-coding parameters of a trained model (bitstream version 2).

A learned codec decodes only if both sides derive the very same probability
tables. Floating-point densities recomputed on another backend, XLA version,
thread count or with fast-math can differ in the last bit, and one flipped
quantized probability turns the rest of the stream into garbage (CompressAI
issues 279/309/320, tensorflow-compression issue 44). So:

* `finalize` turns the learned densities into **integer** frequency tables
  once per model: the factorized prior per channel, and the zero-mean
  quantized Gaussian for each of `NUM_SCALES` log-spaced scales, each over
  symbols −`TAIL`..`TAIL`, every symbol ≥ 1, rows summing to 2^`PRECISION`.
  The trainer stores them in every checkpoint (`Task.finalize`).
* The hyperprior's σ becomes an **index** into that scale table, computed from
  ẑ by `scale_indices`: h_s evaluated in fixed point (12-bit weights, 24-bit
  activations with `FRAC_BITS` fractional bits, floor shifts) as float64
  matrix products whose every value is an integer below 2^53. Such products
  are exact in any order, so every BLAS, thread count or machine gives the
  same indices, bit for bit.
* Coding tables for an image are slices of the integer rows over the
  image's own symbol range, normalised by one float64 division: exact IEEE
  arithmetic, identical everywhere.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from methods.compression import entropy

TAIL = 4096  # tables cover symbols −TAIL..TAIL (= codec.SYMBOL_LIMIT)
PRECISION = 24  # table rows sum to 2^PRECISION
NUM_SCALES = 64
SCALE_MAX = 256.0
FRAC_BITS = 10  # fixed-point activations of the integer h_s: value · 2^FRAC_BITS
WEIGHT_BITS = 12  # signed fixed-point weights: |w| < 2^(WEIGHT_BITS − 1)
ACT_LIMIT = 2**24 - 1  # activations are clipped to 0..ACT_LIMIT (|products| · taps stay < 2^53)


def scale_table() -> np.ndarray:
    """The NUM_SCALES σ values, log-spaced from the likelihood's lower bound to SCALE_MAX."""
    return np.exp(np.linspace(math.log(entropy.SCALE_BOUND), math.log(SCALE_MAX), NUM_SCALES))


def quantize_pmf(p):
    """Float pmf rows [..., L] -> int32 frequencies, each ≥ 1, each row summing to 2^PRECISION."""
    total = 2**PRECISION
    p = p / jnp.sum(p, axis=-1, keepdims=True)
    f = jnp.floor(p * (total - p.shape[-1])).astype(jnp.int32) + 1
    rest = total - jnp.sum(f, axis=-1)
    top = jnp.argmax(f, axis=-1)
    return f + jax.nn.one_hot(top, p.shape[-1], dtype=jnp.int32) * rest[..., None]


def finalize(pmf_rows) -> dict:
    """The integer tables of a model, from its factorized prior's pmf over −TAIL..TAIL ([C, 2·TAIL+1] floats)."""
    k = jnp.arange(-TAIL, TAIL + 1, dtype=jnp.float32)
    s = jnp.asarray(scale_table(), jnp.float32)[:, None]
    gauss = jax.scipy.special.ndtr((k + 0.5) / s) - jax.scipy.special.ndtr((k - 0.5) / s)
    mids = np.sqrt(scale_table()[:-1] * scale_table()[1:])
    return {
        "factorized": quantize_pmf(jnp.maximum(pmf_rows, 0.0)),
        "gaussian": quantize_pmf(jnp.maximum(gauss, 0.0)),
        "thresholds": jnp.asarray(np.ceil(mids * 2**FRAC_BITS), jnp.int32),
    }


def empty(channels: int) -> dict:
    """Zero tables of the right shapes (a state that was never finalized)."""
    n = 2 * TAIL + 1
    return {
        "factorized": jnp.zeros((channels, n), jnp.int32),
        "gaussian": jnp.zeros((NUM_SCALES, n), jnp.int32),
        "thresholds": jnp.zeros((NUM_SCALES - 1,), jnp.int32),
    }


def is_finalized(tables) -> bool:
    return tables is not None and int(np.asarray(tables["factorized"][0]).sum()) == 2**PRECISION


def probabilities(row: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The float64 coding distribution over symbols lo..hi from an integer row (exact, identical everywhere)."""
    f = np.asarray(row[lo + TAIL : hi + TAIL + 1], np.float64)
    return f / f.sum()


# ----------------------------------------------------------------------------- fixed-point hyper-synthesis


def _patches(x: np.ndarray, k: int, pad: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> a (H', W', k, k, C) strided view of the patches of a stride-1 VALID correlation after zero
    padding (no copy: `_layer` copies it band by band)."""
    x = np.pad(x, (pad, pad, (0, 0)))
    h, w = x.shape[0] - k + 1, x.shape[1] - k + 1
    s = x.strides
    return np.lib.stride_tricks.as_strided(x, (h, w, k, k, x.shape[2]), (s[0], s[1], s[0], s[1], s[2]))


def _fixed_weights(kernel: np.ndarray) -> tuple[np.ndarray, int]:
    """(integer-valued float64 kernel, fractional bits): |w| < 2^(WEIGHT_BITS − 1), exact power-of-two scaling."""
    peak = float(np.max(np.abs(kernel)))
    bits = WEIGHT_BITS - 1 - (math.frexp(peak)[1] if peak > 0 else 0)
    return np.rint(np.asarray(kernel, np.float64) * 2.0**bits), bits


def transpose_padding(k: int, s: int) -> tuple[int, int]:
    """(before, after) padding of the s-dilated input in lax.conv_transpose's 'SAME' mode (flax's ConvTranspose)
    for a kernel of k taps: the correlation with the (unflipped) kernel then gives s times the input's size."""
    pad_len = k + s - 2
    before = k - 1 if s > k - 1 else -(-pad_len // 2)
    return before, pad_len - before


def _layer(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, transpose_stride: int, relu: bool = True) -> np.ndarray:
    """One conv (or flax 'SAME' transposed conv), + ReLU unless `relu` is False, on integer activations at scale
    2^FRAC_BITS (clipped to ±ACT_LIMIT)."""
    k = kernel.shape[0]
    if transpose_stride > 1:  # lax.conv_transpose 'SAME': dilate by the stride, pad, correlate (kernel not flipped)
        s = transpose_stride
        d = np.zeros(((x.shape[0] - 1) * s + 1, (x.shape[1] - 1) * s + 1, x.shape[2]), x.dtype)
        d[::s, ::s] = x
        p = _patches(d, k, transpose_padding(k, s))
    else:
        p = _patches(x, k, ((k - 1) // 2, k // 2))
    w, bits = _fixed_weights(kernel)
    w = w.reshape(-1, w.shape[-1])
    b = np.rint(np.asarray(bias, np.float64) * 2.0 ** (FRAC_BITS + bits))
    h, wd = p.shape[:2]
    out = np.empty((h, wd, w.shape[-1]), np.float64)
    band = max(1, 4096 // max(wd, 1))  # rows of patches copied at a time: memory bounded on large images
    for r in range(0, h, band):
        rows = p[r : r + band].reshape(-1, w.shape[0])
        o = rows @ w + b
        o = np.floor((np.maximum(o, 0.0) if relu else o) / 2.0**bits)
        out[r : r + band] = np.clip(o, -ACT_LIMIT, ACT_LIMIT).reshape(-1, wd, w.shape[-1])
    return out


# h_s's layers by the names HyperSynthesis gives them, with their strides. They are the names Flax would pick on
# its own: a layer's name also seeds its initialisation and orders the model id's hash, so other names would
# change every trained model and bitstream.
HYPER_SYNTHESIS_LAYERS = (("ConvTranspose_0", 2), ("ConvTranspose_1", 2), ("Conv_0", 1))


def _hyper_synthesis(hs_params: dict, medians: np.ndarray, z_symbols: np.ndarray, means: bool = False) -> np.ndarray:
    """h_s = deconv5/2 → ReLU → deconv5/2 → ReLU → conv3 (→ ReLU for σ alone) in fixed point: its output
    · 2^FRAC_BITS, (h, w, M) σ or, with `means` (the mean-scale prior: no final ReLU), (h, w, 2M) σ then μ."""
    x = z_symbols[0].astype(np.float64) * 2.0**FRAC_BITS + np.rint(np.asarray(medians, np.float64) * 2.0**FRAC_BITS)
    last = len(HYPER_SYNTHESIS_LAYERS) - 1
    for i, (name, stride) in enumerate(HYPER_SYNTHESIS_LAYERS):
        p = hs_params[name]
        x = _layer(x, np.asarray(p["kernel"]), np.asarray(p["bias"]), stride, relu=not (means and i == last))
    return x


def _indices(sigma: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(thresholds, np.float64), sigma, side="right").astype(np.int32)[None]


def scale_indices(hs_params: dict, medians: np.ndarray, z_symbols: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Scale-table index of every latent of y, from the integer symbols of z (1, h, w, N) -> (1, 4h, 4w, M) int32.

    ẑ = symbols + medians enters at 2^FRAC_BITS; exact and identical on every machine.
    """
    return _indices(_hyper_synthesis(hs_params, medians, z_symbols), thresholds)


def scale_indices_and_means(
    hs_params: dict, medians: np.ndarray, z_symbols: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The mean-scale prior's (scale-table indices (1, 4h, 4w, M) int32, means μ̂ (1, 4h, 4w, M) float32).

    μ̂ is the fixed-point output on the grid 2^−FRAC_BITS (|μ̂| < 2^14): an integer over a power of two, exact
    in float32, so ŷ = symbol + μ̂ is the same number on every machine. A negative σ output falls below the
    first threshold: index 0, the scale bound, as the float model's lower bound."""
    out = _hyper_synthesis(hs_params, medians, z_symbols, means=True)
    m = out.shape[-1] // 2
    return _indices(out[..., :m], thresholds), (out[..., m:] / 2.0**FRAC_BITS).astype(np.float32)[None]


def fixed_point_scales(hs_params: dict, medians: np.ndarray, z_symbols: np.ndarray, means: bool = False) -> np.ndarray:
    """The fixed-point h_s's output (σ, or σ then μ with `means`) as floats (for tests against the float network)."""
    return _hyper_synthesis(hs_params, medians, z_symbols, means)[None] / 2.0**FRAC_BITS
