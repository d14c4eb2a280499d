"""Discriminators and adversarial losses shared by the GAN methods.

Losses return one value per example (mean over every non-batch axis, so
patch discriminators work too); the caller reduces and weights them.

* standard GAN on logits (BCE = sigmoid cross-entropy):
  generator  −log d(fake)                  = BCE(fake, 1)
  critic     −log d(real) − log(1 − d(fake)) = BCE(real, 1) + BCE(fake, 0)
* least squares (LSGAN) on raw outputs:
  generator  (d(fake) − 1)²
  critic     (d(real) − 1)² + d(fake)²
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import optax

from common.nn import conv, layers


def _mean(x):
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def bce_generator_loss(logits_fake):
    return _mean(optax.sigmoid_binary_cross_entropy(logits_fake, 1.0))


def bce_discriminator_loss(logits_real, logits_fake):
    return _mean(optax.sigmoid_binary_cross_entropy(logits_real, 1.0)) + _mean(
        optax.sigmoid_binary_cross_entropy(logits_fake, 0.0)
    )


def lsgan_generator_loss(d_fake):
    return _mean(jnp.square(d_fake - 1.0))


def lsgan_discriminator_loss(d_real, d_fake):
    return _mean(jnp.square(d_real - 1.0)) + _mean(jnp.square(d_fake))


# (channels, stride) of the conv-BN-LReLU layers after the first conv (SRGAN / SRFeat)
SRGAN_LAYERS = ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2))


class ConvDiscriminator(nn.Module):
    """conv3x3 (s1) + LReLU → [conv3x3 (stride) + BN + LReLU]* → flatten → dense + LReLU → dense 1 logit.

    With the default layers this is the SRGAN/SRFeat discriminator. The dense
    layer makes the input size part of the architecture. `width` scales every
    channel count (CPU demos and tests).
    """

    first: int = 64
    spec: Sequence[tuple[int, int]] = SRGAN_LAYERS
    dense: int = 1024
    width: float = 1.0
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        w = lambda c: max(4, int(round(c * self.width)))  # noqa: E731
        x = layers.lrelu(conv.Conv(w(self.first), (3, 3))(x))
        for c, s in self.spec:
            x = conv.Conv(w(c), (3, 3), strides=s, use_bias=not self.batch_norm)(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-5)(x)
            x = layers.lrelu(x)
        x = x.reshape(x.shape[0], -1)
        x = layers.lrelu(nn.Dense(w(self.dense))(x))
        return nn.Dense(1)(x)[:, 0]
