"""GELU (erf form) whose backward pass keeps only its input.

``tf.nn.gelu(x, approximate=False)`` is ``0.5 * x * (1 + erf(x / sqrt(2)))``; autodiff
through it keeps three intermediates of ``x``'s size alive until the backward pass
(``x / sqrt(2)`` for the erf gradient, ``0.5 * x`` and ``1 + erf(.)`` for the product).
For the FFN of the first Transformer layer at batch 2048 that is three (2048, 50, 300)
float32 tensors, ~370 MB. :func:`gelu` computes the same values and, in training, a
closed-form gradient from ``x`` alone:
``d/dx gelu(x) = Phi(x) + x * phi(x)`` (standard normal CDF and density).
Outside training it is ``tf.nn.gelu`` itself, so exported graphs are unchanged.
"""
from __future__ import annotations

import math

import rearec_tf._env  # noqa: F401
import tensorflow as tf

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@tf.custom_gradient
def _gelu_keep_input(x):
    def grad(dy):
        cdf = 0.5 * (1.0 + tf.math.erf(x * _INV_SQRT2))
        pdf = _INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x))
        return dy * (cdf + x * pdf)

    return tf.nn.gelu(x, approximate=False), grad


def gelu(x, training=None):
    """Exact (erf) GELU; with ``training`` its gradient keeps only ``x`` (module doc)."""
    if training:
        return _gelu_keep_input(x)
    return tf.nn.gelu(x, approximate=False)
