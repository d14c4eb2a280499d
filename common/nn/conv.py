"""Convolutions whose gradients (and for 1x1 and few-output layers, forward) avoid XLA:CPU's slow kernels.

With its convolutions in YNNPACK (jaxlib 0.10's default), XLA:CPU computes a convolution's forward pass and
input gradient within 25–35% of oneDNN's rate, but its weight gradient at about a third of it, and that is
where the CPU train steps lost most to PyTorch (``benchmarks/conv_parts.py``). Importing `common` now hands
XLA:CPU's convolutions to Eigen instead, whose weight gradient beats the rewrites below; ``auto`` then keeps
only the 1x1 and few-output matmuls. For a stride-1 convolution,

    dW[i, j, ci, co] = Σ_{n, r, c} x_pad[n, r + i, c + j, ci] · g[n, r, c, co],

which is one matmul between the im2col matrix of ``x_pad`` (kh·kw·C_in rows) and the output gradient. Built
whole, that matrix is kh·kw times the input and copying it costs more than the matmul saves. Here it is
built a chunk of pixels at a time inside a loop, each chunk small enough to stay in cache, from the input
transposed once to (C_in, N, H·W) (up to 256 channels by a matmul with the identity, :func:`_channels_first`):
a tap's shift is then a slice along the last axis, and each chunk's product is a plain
(kh·kw·C_in, N·chunk) @ (N·chunk, C_out) matmul, the layout XLA:CPU's matmul is fastest in. On the 2-core
CPU the weight gradient gets 1.5x faster on SRFeat's 3x3 128→128 convolution, 2.4x on VGG's conv1_2 at
240x240 and 7x on SRFeat's second up-sampling convolution (``conv_parts.py --sweep``).

A stride-s convolution keeps XLA's forward, but its gradients (which XLA:CPU computes 3-4x slower than
the forward) go through the equivalent stride-1 convolution of the space-to-depth input (s·s·C_in
channels, a ⌈k/s⌉ kernel): XLA's stride-1 input gradient and the im2col weight gradient.

Two kinds of layer avoid XLA:CPU's convolution altogether, forward and backward, since a matmul does them
faster: a 1x1 convolution is one matmul over the channels (2-4x faster with its gradients, e.g. SRFeat's
long-range skips and DMENet's residual shortcuts), and a stride-1 convolution to at most 3 channels (an RGB
or single-map head, kh·kw·C_out ≤ C_in) is a matmul to every tap's outputs followed by a sum of shifted
slices (:func:`_thin`; 1.5-2x faster).

`conv_general_dilated` is a drop-in for ``lax.conv_general_dilated`` (flax's ``nn.Conv`` takes it as
``conv_general_dilated=``; :class:`Conv` is ``nn.Conv`` with it). It uses the rewrites only where they
apply (2-D, NHWC/HWIO, equal strides, no dilation, no feature or batch groups, float32) and where the mode
says so; anywhere else it is ``lax.conv_general_dilated``. Other than for those two kinds of layer, the
forward pass and the stride-1 input gradient are XLA's own. The choice is made when a function is traced, from
``config.conv_weight_grad`` (:func:`configure`):

* ``auto`` (default): on CPU the 1x1 and few-output matmuls at every size; XLA's native kernels on GPU and
  TPU. Where XLA:CPU's convolutions run in Eigen (what `common` sets on jaxlib 0.10: see
  :func:`_ynnpack_convolutions`), nothing more: Eigen's weight gradient beat the im2col one on every layer of
  the benchmarked networks (0.5-0.85 of its time, ``conv_parts.py --sweep``), and its strided gradients the
  space-to-depth ones (0.83). Where they run in YNNPACK (jaxlib 0.10's own default), also the im2col weight
  gradient where the input has at least 16 channels and the weight gradient at least 6 GFLOP
  (2·N·H_out·W_out·kh·kw·C_in·C_out; below that XLA's own is about as fast), and the strided rewrite;
* ``im2col``: every rewrite wherever it applies, on every backend and at every size;
* ``xla``: never.
"""

from __future__ import annotations

import contextlib
import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from common.errors import ConfigError
from common.train.xla import YNN_FLAG

MODES = ("auto", "im2col", "xla")
_mode = "auto"
# Elements of one chunk's im2col block (kh·kw·C_in x N·chunk): 2^20 float32 (4 MiB) measured best on the 2-core CPU.
_CHUNK_ELEMENTS = 1 << 20
_NHWC = ("NHWC", "HWIO", "NHWC")
_MIN_CHANNELS = 16
_MIN_FLOPS = 6e9  # of the weight gradient, 2·N·H·W·kh·kw·C_in·C_out
# Stride-1 convolutions to at most this many channels (with kh·kw·C_out ≤ C_in) go through `_thin`; at 4 output
# channels its gradient was already 2x slower than XLA's on the 2-core CPU.
_THIN_OUT = 3
# Up to this many channels the im2col input is transposed by a matmul with the identity (`_channels_first`).
_MATMUL_TRANSPOSE_MAX = 256


def _check(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"config conv_weight_grad={mode!r}: use one of {', '.join(map(repr, MODES))}")
    return mode


def configure(config) -> None:
    """Sets the weight-gradient mode from ``config.conv_weight_grad`` (``auto`` when the key is absent).

    The mode is process-wide and read when a function is traced: set it before tracing (the methods' ``build``
    does). A function already traced keeps the mode it was traced under."""
    global _mode
    _mode = _check(config.get("conv_weight_grad", "auto"))


@contextlib.contextmanager
def weight_grad(mode: str):
    """Within the block, functions traced use `mode` (``auto``, ``im2col`` or ``xla``)."""
    global _mode
    old, _mode = _mode, _check(mode)
    try:
        yield
    finally:
        _mode = old


def _ynnpack_convolutions() -> bool:
    """Whether XLA:CPU runs convolutions in YNNPACK rather than Eigen, from ``XLA_FLAGS``
    (``--xla_cpu_experimental_ynn_fusion_type``, the last one given): without the flag, jaxlib's default is
    taken to be YNNPACK, as it is on jaxlib 0.10 (and the thresholds below were measured on it)."""
    value = None
    for flag in os.environ.get("XLA_FLAGS", "").split():
        name, _, v = flag.partition("=")
        if name == YNN_FLAG:
            value = v
    return value is None or "convolution" in value


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
    if ndim != 4:
        return False
    if dimension_numbers is None:  # lax's default is NCHW/OIHW
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return dimension_numbers == lax.conv_dimension_numbers((1,) * 4, (1,) * 4, _NHWC)
    return tuple(dimension_numbers) == _NHWC


def _ones(v) -> bool:
    return v is None or all(int(s) == 1 for s in v)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """``lax.conv_general_dilated``, with the im2col weight gradient where it applies and is enabled."""
    native = functools.partial(
        lax.conv_general_dilated,
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    strides = tuple(int(v) for v in window_strides)
    applies = (
        _mode != "xla"
        and _is_nhwc(dimension_numbers, lhs.ndim)
        and len(strides) == 2
        and strides[0] == strides[1]
        and _ones(lhs_dilation)
        and _ones(rhs_dilation)
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and lhs.dtype == jnp.float32
        and rhs.dtype == jnp.float32
    )
    if not applies:
        return native(lhs, rhs)
    s = strides[0]
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    else:
        pads = [(int(lo), int(hi)) for lo, hi in padding]
    pads = tuple(map(tuple, pads))
    if any(p < 0 for pair in pads for p in pair):
        return native(lhs, rhs)
    if _mode == "auto" and jax.default_backend() != "cpu":
        return native(lhs, rhs)
    n, h, w, ci = lhs.shape
    kh, kw, _, co = rhs.shape
    if (kh, kw) == (1, 1):
        return _pointwise(lhs, rhs, s, pads, precision)
    if s == 1 and co <= _THIN_OUT and kh * kw * co <= ci:
        return _thin(lhs, rhs, pads, precision)
    if _mode == "auto":
        if not _ynnpack_convolutions():
            return native(lhs, rhs)
        # smaller than this XLA's own weight gradient is as fast or faster (benchmarks/conv_parts.py --sweep)
        ho, wo = (h + sum(pads[0]) - kh) // s + 1, (w + sum(pads[1]) - kw) // s + 1
        if ci < _MIN_CHANNELS or 2 * n * ho * wo * kh * kw * ci * co < _MIN_FLOPS:
            return native(lhs, rhs)
    if s == 1:
        return _conv(lhs, rhs, pads, precision)
    return _strided_conv(lhs, rhs, s, pads, precision)


def _pointwise(x, w, s, pads, precision):
    """A 1x1 convolution as one matmul over the channels: XLA:CPU runs the convolution 2-10x slower."""
    if any(p for pair in pads for p in pair):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return _dot_channels(x[:, ::s, ::s], w[0, 0], precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _thin(x, w, pads, precision):
    """A stride-1 convolution to a few channels as a matmul to every tap's outputs, then a sum of shifted slices.

    y[r, c] = Σ_{i,j} x_pad[r + i, c + j]·W[i, j] = Σ_{i,j} Z_pad[r + i, c + j, (i, j)] with Z = x·W[:, :, ci, co]
    arranged (C_in, kh·kw·C_out): padding commutes with the matmul. Z has kh·kw·C_out ≤ C_in channels. Its
    gradient dZ[q, (i, j)] = g[q + (top − i, left − j)] (zero outside g) is one concatenation of shifted slices
    of g, and then dx = dZ·W'ᵀ and dW' = xᵀ·dZ are matmuls, where XLA:CPU's convolution and its gradients
    for such layers (SRFeat's last 128 → 3, DMENet's → 1 heads) run 2-4x slower."""
    kh, kw, ci, co = w.shape
    z = _dot_channels(x, _taps_last(w), precision)
    z = jnp.pad(z, ((0, 0), *pads, (0, 0)))
    ho, wo = z.shape[1] - kh + 1, z.shape[2] - kw + 1
    taps = [
        z[:, i : i + ho, j : j + wo, (i * kw + j) * co : (i * kw + j + 1) * co] for i in range(kh) for j in range(kw)
    ]
    return functools.reduce(jnp.add, taps)


def _taps_last(w):
    """(kh, kw, C_in, C_out) -> (C_in, kh·kw·C_out), tap-major."""
    kh, kw, ci, co = w.shape
    return w.transpose(2, 0, 1, 3).reshape(ci, kh * kw * co)


def _dot_channels(a, b, precision):
    """a (..., K) · b (K, M) -> (..., M)."""
    return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())), precision=precision)


def _thin_fwd(x, w, pads, precision):
    return _thin(x, w, pads, precision), (x, w)


def _thin_bwd(pads, precision, res, g):
    x, w = res
    kh, kw, ci, co = w.shape
    _, h, wd, _ = x.shape
    (top, bottom), (left, right) = pads
    # G[a] = g[a − (k − 1)]: dZ's slice for tap (i, j) starts at row top + kh − 1 − i, column left + kw − 1 − j
    spec = ((kh - 1, kh - 1 - bottom, 0), (kw - 1, kw - 1 - right, 0))
    starts = [(top + kh - 1 - i, left + kw - 1 - j) for i in range(kh) for j in range(kw)]
    gp = lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), *spec, (0, 0, 0)))
    dz = jnp.concatenate([gp[:, r : r + h, c : c + wd] for r, c in starts], axis=-1)
    dx = lax.dot_general(dz, _taps_last(w), (((3,), (1,)), ((), ())), precision=precision)
    # dW from dZ built again channels-first, (kh·kw·C_out, N, H, W): a plain matmul against x as it is stored
    # (contracting x's leading axes instead makes XLA:CPU transpose x first, 0.5 s on SRFeat's 128 x 296²)
    gp = lax.pad(g.transpose(3, 0, 1, 2), jnp.zeros((), g.dtype), ((0, 0, 0), (0, 0, 0), *spec))
    dzt = jnp.concatenate([gp[:, :, r : r + h, c : c + wd] for r, c in starts], axis=0)
    dw = lax.dot_general(dzt, x, (((1, 2, 3), (0, 1, 2)), ((), ())), precision=precision)
    return dx, dw.reshape(kh, kw, co, ci).transpose(0, 1, 3, 2)


_thin.defvjp(_thin_fwd, _thin_bwd)


def _space_to_depth(x, w, s, pads):
    """A stride-`s` convolution of (x, w) as a VALID stride-1 one of (S, W'), returned as (S, W').

    y[r, c] = Σ_{i,j} x_pad[s·r + i, s·c + j]·W[i, j]; with i = s·a + p and j = s·b + q this is a stride-1
    convolution of S[r, c, (p, q, ci)] = x_pad[s·r + p, s·c + q, ci] with W'[a, b, (p, q, ci)] =
    W[s·a + p, s·b + q] (zero past the kernel's edge)."""
    n, h, wd, ci = x.shape
    kh, kw, _, co = w.shape
    (top, bottom), (left, right) = pads
    ho, wo = (h + top + bottom - kh) // s + 1, (wd + left + right - kw) // s + 1
    ka, kb = -(-kh // s), -(-kw // s)
    rows, cols = ho - 1 + ka, wo - 1 + kb  # S's size: every tap of every output, nothing more
    # lax.pad crops with negative padding: input rows that no output reads are dropped
    spec = ((0, 0, 0), (top, s * rows - h - top, 0), (left, s * cols - wd - left, 0), (0, 0, 0))
    x = lax.pad(x, jnp.zeros((), x.dtype), spec)
    x = x.reshape(n, rows, s, cols, s, ci).transpose(0, 1, 3, 2, 4, 5).reshape(n, rows, cols, s * s * ci)
    w = jnp.pad(w, ((0, ka * s - kh), (0, kb * s - kw), (0, 0), (0, 0)))
    w = w.reshape(ka, s, kb, s, ci, co).transpose(0, 2, 1, 3, 4, 5).reshape(ka, kb, s * s * ci, co)
    return x, w


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _strided_conv(x, w, s, pads, precision):
    """XLA's strided convolution forward; its gradients through the stride-1 space-to-depth form.

    XLA:CPU's strided convolution gradients run 3-4x slower than its forward; those of the equivalent
    stride-1 convolution (:func:`_space_to_depth`) are fast, and its weight gradient is the im2col one."""
    return lax.conv_general_dilated(x, w, (s, s), pads, dimension_numbers=_NHWC, precision=precision)


def _strided_fwd(x, w, s, pads, precision):
    return _strided_conv(x, w, s, pads, precision), (x, w)


def _strided_bwd(s, pads, precision, res, g):
    x, w = res

    def via_stride_1(x, w):
        xs, ws = _space_to_depth(x, w, s, pads)
        return _conv(xs, ws, ((0, 0), (0, 0)), precision)

    _, vjp = jax.vjp(via_stride_1, x, w)
    return vjp(g)


_strided_conv.defvjp(_strided_fwd, _strided_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, pads, precision):
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_NHWC, precision=precision)


def _conv_fwd(x, w, pads, precision):
    return _conv(x, w, pads, precision), (x, w)


def _conv_bwd(pads, precision, res, g):
    x, w = res
    _, input_vjp = jax.vjp(
        lambda x: lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_NHWC, precision=precision), x
    )
    (dx,) = input_vjp(g)
    return dx, weight_gradient(x, g, w.shape[:2], pads, precision)


_conv.defvjp(_conv_fwd, _conv_bwd)


def weight_gradient(x, g, kernel_size, pads, precision=None):
    """dW (kh, kw, C_in, C_out) of a stride-1 NHWC convolution of `x` padded by `pads`, for output gradient `g`.

    Equal to the weight half of ``jax.vjp`` of ``lax.conv_general_dilated``; see the module docstring."""
    kh, kw = kernel_size
    n, h, w, ci = x.shape
    _, ho, wo, co = g.shape
    (top, bottom), (left, right) = pads
    hp, wp = h + top + bottom, w + left + right
    # Every pixel of the padded grid is a position; g is zero outside its ho x wo corner, so the
    # positions whose taps wrap into the next row add nothing.
    pixels = hp * wp
    chunk = max(8, min(pixels, _CHUNK_ELEMENTS // (kh * kw * ci * n)))
    chunks = -(-pixels // chunk)
    span = chunks * chunk
    # x gets enough zero rows below for the last chunk's last tap, g enough for the last chunk: one pad each
    rows_x = -(-(span + (kh - 1) * wp + (kw - 1)) // wp)
    rows_g = -(-span // wp)
    x = jnp.pad(x, ((0, 0), (top, rows_x - h - top), (left, right), (0, 0)))
    xt = _channels_first(x).reshape(ci, n, rows_x * wp)
    gf = jnp.pad(g, ((0, 0), (0, rows_g - ho), (0, wp - wo), (0, 0))).reshape(n, rows_g * wp, co)
    taps = [i * wp + j for i in range(kh) for j in range(kw)]

    def body(step, acc):
        start = step * chunk
        cols = jnp.concatenate([lax.dynamic_slice_in_dim(xt, start + t, chunk, axis=2) for t in taps])
        rows = lax.dynamic_slice_in_dim(gf, start, chunk, axis=1)
        return acc + jnp.dot(cols.reshape(kh * kw * ci, n * chunk), rows.reshape(n * chunk, co), precision=precision)

    acc = lax.fori_loop(0, chunks, body, jnp.zeros((kh * kw * ci, co), jnp.float32))
    return acc.reshape(kh, kw, ci, co)


def _channels_first(x):
    """(..., C) -> (C, prod(...)), up to 256 channels as the matmul I · xᵀ rather than a transpose.

    XLA:CPU runs a transpose of a large array on one thread (24 ms for 3x242x242x64, 11 M elements), the matmul
    on all of them at its full rate (6.4 ms). The matmul's cost grows with C (2·C FLOPs an element): on the
    2-core CPU the weight gradient was faster with it up to 256 channels, as fast at 512 and 10-20% slower at 768
    (compression's space-to-depth inputs). The result is exact for finite x: each element is one product by 1.0
    plus products by 0.0 (an inf or NaN in x would also spread to the other channels of its pixel; the weight
    gradient is then not finite either way)."""
    c = x.shape[-1]
    flat = x.reshape(-1, c)
    if c > _MATMUL_TRANSPOSE_MAX:
        return flat.T
    eye = jnp.eye(c, dtype=x.dtype)
    return lax.dot_general(eye, flat, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
