"""Small building blocks shared by the networks."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from common.nn import conv


def lrelu(x, slope: float = 0.2):
    return nn.leaky_relu(x, slope)


def upsample_nearest(x, factor: int = 2):
    """NHWC nearest-neighbour up-sampling by an integer factor."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def depth_to_space(x, block: int):
    """Pixel shuffle in TensorFlow's NHWC order (``tf.nn.depth_to_space``).

    out[n, h·r + i, w·r + j, c] = x[n, h, w, (i·r + j)·C + c] with C = channels / r².
    """
    n, h, w, c = x.shape
    if c % (block * block):
        raise ValueError(f"depth_to_space: {c} channels are not divisible by block² = {block * block}")
    co = c // (block * block)
    x = x.reshape(n, h, w, block, block, co)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, co)


def nearest_down(y, factor: int):
    """NHWC nearest down-sampling: the centre sample of each factor x factor block."""
    if factor == 1:
        return y
    return y[:, factor // 2 :: factor, factor // 2 :: factor]


class ConvBNAct(nn.Module):
    """conv3x3 → BatchNorm → LReLU(0.2) (activation optional)."""

    features: int
    kernel: int = 3
    act: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        x = conv.Conv(self.features, (self.kernel, self.kernel), use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-5)(x)
        return lrelu(x) if self.act else x


class ResBlock(nn.Module):
    """conv-BN-LReLU-conv-BN + shortcut (1x1 projection when the width changes), then LReLU.

    `post_act=False` leaves the sum linear (the SRGAN/SRFeat block).
    """

    features: int
    project: bool = True
    post_act: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        h = ConvBNAct(self.features)(x, train)
        h = ConvBNAct(self.features, act=False)(h, train)
        if self.project or x.shape[-1] != self.features:
            x = conv.Conv(self.features, (1, 1), use_bias=False, name="shortcut")(x)
        return lrelu(h + x) if self.post_act else h + x


class PreActResBlock(nn.Module):
    """StarGAN-v2 residual block: [IN →] LReLU → conv → [IN →] LReLU → conv, (shortcut + residual)/√2.

    `resample` is 'down' (2x2 average pooling), 'up' (nearest x2, before the
    first conv) or 'none'; the shortcut is a 1x1 conv (no bias) when the
    width changes and is resampled the same way.
    """

    features: int
    resample: str = "none"
    norm: bool = True

    @nn.compact
    def __call__(self, x):
        def pre(h, name):
            if self.norm:
                h = nn.InstanceNorm(epsilon=1e-5, name=name)(h)
            return lrelu(h)

        sc = x
        if self.resample == "up":
            sc = upsample_nearest(sc)
        if x.shape[-1] != self.features:
            sc = conv.Conv(self.features, (1, 1), use_bias=False, name="shortcut")(sc)
        if self.resample == "down":
            sc = nn.avg_pool(sc, (2, 2), (2, 2))
        h = pre(x, "norm1")
        if self.resample == "up":
            h = upsample_nearest(h)
        # With normalisation, per-channel constants are removed by the next instance norm (this
        # block's, the next block's, or the network's last), so biases would get zero gradient.
        c1 = x.shape[-1] if self.resample == "down" else self.features
        h = conv.Conv(c1, (3, 3), use_bias=not self.norm, name="conv1")(h)
        if self.resample == "down":
            h = nn.avg_pool(h, (2, 2), (2, 2))
        h = pre(h, "norm2")
        h = conv.Conv(self.features, (3, 3), use_bias=not self.norm, name="conv2")(h)
        return (sc + h) / jnp.sqrt(2.0)
