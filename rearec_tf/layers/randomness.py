"""Reproducible, stateless training randomness (dropout masks, PRL noise).

Inside ``with seeded(seed):`` (``seed``: an int64 tensor of shape ``(2,)``) every
:class:`SeededDropout` and :func:`normal` draws from ``tf.random.stateless_*`` ops keyed
by ``fold_in(seed, salt)``, where each layer has a fixed ``salt`` and the reasoning loop
folds in its step index (:func:`folded`). :class:`rearec_tf.models.ReaRecModel` seeds
each training step with ``(config.seed, optimizer.iterations)``, so

- the masks are a pure function of the seed and the step counter: a run resumed from a
  checkpoint (which holds the optimizer's counter) draws exactly what an uninterrupted
  run draws;
- no random-generator state is read or written inside the ``tf.while_loop`` (stateful
  generator ops there serialise the loop and its gradient), and the ops run on CPU, GPU
  and under XLA.

Outside such a block (e.g. a user's own model) the layers fall back to ordinary
stateful randomness.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

import rearec_tf._env  # noqa: F401
import tensorflow as tf

_LOCAL = threading.local()


def _stack():
    if not hasattr(_LOCAL, "seeds"):
        _LOCAL.seeds = []
    return _LOCAL.seeds


def current_seed() -> Optional[tf.Tensor]:
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def seeded(seed) -> Iterator[None]:
    """Draw randomness from ``seed`` (int64 ``(2,)``) inside the block."""
    _stack().append(tf.cast(seed, tf.int64))
    try:
        yield
    finally:
        _stack().pop()


@contextlib.contextmanager
def folded(value) -> Iterator[None]:
    """Fold ``value`` (e.g. a loop index) into the current seed, if there is one."""
    seed = current_seed()
    if seed is None:
        yield
        return
    with seeded(fold(seed, value)):
        yield


def fold(seed, value) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(
        tf.cast(seed, tf.int64), tf.cast(value, tf.int64))


def normal(shape, stddev, dtype=tf.float32, salt: int = 0) -> tf.Tensor:
    seed = current_seed()
    if seed is None:
        return tf.random.normal(shape, stddev=stddev, dtype=dtype)
    return tf.random.stateless_normal(shape, seed=fold(seed, salt), stddev=stddev, dtype=dtype)


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class SeededDropout(tf.keras.layers.Layer):
    """Inverted dropout whose mask comes from the current seed and a fixed ``salt``."""

    def __init__(self, rate: float, salt: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.salt = int(salt)

    def call(self, x, training=None):
        if not training or self.rate <= 0.0:
            return x
        seed = current_seed()
        if seed is None:
            return tf.nn.dropout(x, rate=self.rate)
        u = tf.random.stateless_uniform(tf.shape(x), seed=fold(seed, self.salt), dtype=x.dtype)
        return tf.where(u >= self.rate, x / (1.0 - self.rate), tf.zeros_like(x))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, salt=self.salt)
        return cfg
