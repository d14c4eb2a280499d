"""Small building blocks shared by the networks."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


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
        x = nn.Conv(self.features, (self.kernel, self.kernel), use_bias=False)(x)
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
            x = nn.Conv(self.features, (1, 1), use_bias=False, name="shortcut")(x)
        return lrelu(h + x) if self.post_act else h + x
