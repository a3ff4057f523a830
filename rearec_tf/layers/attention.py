"""Multi-head self-attention with a preallocated key/value cache.

The cache pattern follows keras-hub's cached attention: the reasoning tokens' keys and
values live in a tensor of fixed length allocated once, and each new token writes its
keys/values at an index (a stock scatter op); the step-0 item keys/values are kept
beside it, read-only (:func:`make_cache`). Shapes never change inside a
``tf.while_loop``, so the loop traces once, compiles under XLA and exports.

Weights follow the PyTorch/RecBole layout of the authors' release: Q/K/V/output
projections with biases, heads are contiguous blocks of ``head_dim`` features.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.config import QKV_INITS
from rearec_tf.layers.randomness import SeededDropout


def normal_init(stddev: float) -> tf.keras.initializers.Initializer:
    """N(0, stddev) initializer, a new instance for every weight."""
    return tf.keras.initializers.RandomNormal(stddev=stddev)


def qkv_initializer(kind: str, stddev: float, hidden_size: int) -> tf.keras.initializers.Initializer:
    """A fresh initializer for one query/key/value kernel. ``kind`` (one of
    ``rearec_tf.config.QKV_INITS``): ``normal`` = N(0, stddev) like every other weight
    (the ReaRec release, SPEC §2); ``torch_mha`` = PyTorch ``nn.MultiheadAttention``'s own
    default, Xavier-uniform over its stacked ``(3d, d)`` in-projection, i.e. U(±√(6/4d)):
    what the SASRec reference code (pmixer/SASRec.pytorch and the RecSys'23 SASRec-CE code
    built on it) trains with, since its N(0, 0.02) pass re-initialises only
    ``nn.Linear``/``nn.Embedding`` modules and the in-projection is neither."""
    if kind == "normal":
        return normal_init(stddev)
    if kind == "torch_mha":
        bound = (6.0 / (4 * hidden_size)) ** 0.5
        return tf.keras.initializers.RandomUniform(-bound, bound)
    raise ValueError(f"unknown qkv_init {kind!r}; choose one of {QKV_INITS}")


def dense_2d(layer: tf.keras.layers.Dense, x: tf.Tensor) -> tf.Tensor:
    """Apply a Dense layer to ``(..., d_in)`` as one 2-D matmul. Keras would use a
    ``Tensordot`` with a shape computed at run time, which XLA cannot compile inside the
    gradient of a ``tf.while_loop``; a reshape to 2-D avoids it."""
    y = layer(tf.reshape(x, [-1, x.shape[-1]]))
    inner = x.shape.as_list()[1:-1]
    if None not in inner:  # e.g. one reasoning token (B, 1, d): a static reshape, no shape ops
        return tf.reshape(y, [-1] + inner + [layer.units])
    shape = tf.shape(x)
    return tf.reshape(y, tf.concat([shape[:-1], [layer.units]], axis=0))


def _neg_inf(dtype: tf.DType) -> tf.Tensor:
    # A finite large negative: fully masked rows give a uniform softmax, not NaN,
    # and the value fits float16 as well as float32.
    return tf.constant(-1e9 if dtype != tf.float16 else -6e4, dtype)


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class CachedMultiHeadAttention(tf.keras.layers.Layer):
    """Self-attention whose keys/values can be read from and written to a cache.

    ``call(x, mask)`` attends among the tokens of ``x`` (shape ``(B, T, d)``) with a
    boolean ``mask`` ``(B, T, T)`` (True = may attend) and returns ``(out, (k, v))``.

    ``call(x, mask, cache=c, cache_index=i)`` treats ``x`` ``(B, 1, d)`` as reasoning
    token ``i``: ``c`` is the cache of :func:`make_cache` (the step-0 item keys/values
    plus ``S`` preallocated reasoning slots); the token's key/value are written at
    reasoning slot ``i``, it attends over the ``L`` items and ``S`` slots with ``mask``
    ``(B, 1, L + S)``, and the updated cache is returned.
    """

    def __init__(self, num_heads: int, hidden_size: int, dropout: float = 0.0,
                 initializer_range: float = 0.02, salt: int = 0, qkv_init: str = "normal",
                 **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.hidden_size = hidden_size
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.salt = salt
        self.qkv_init = qkv_init  # checked by qkv_initializer

        def dense(name, initializer):
            # A fresh initializer per weight: an unseeded Keras initializer instance
            # returns identical values each time it is called.
            return tf.keras.layers.Dense(hidden_size, name=name, bias_initializer="zeros",
                                         kernel_initializer=initializer)

        self.query_dense, self.key_dense, self.value_dense = (
            dense(name, qkv_initializer(qkv_init, initializer_range, hidden_size))
            for name in ("query", "key", "value"))
        self.output_dense = dense("output", normal_init(initializer_range))
        self.attention_dropout = SeededDropout(dropout, salt=salt)

    def build(self, input_shape):
        for dense in (self.query_dense, self.key_dense, self.value_dense, self.output_dense):
            dense.build(tf.TensorShape([None, None, self.hidden_size]))
        super().build(input_shape)

    def _split_heads(self, x: tf.Tensor) -> tf.Tensor:
        if x.shape[1] is not None:  # one reasoning token: a static reshape
            return tf.reshape(x, [-1, x.shape[1], self.num_heads, self.head_dim])
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        return tf.reshape(x, [b, t, self.num_heads, self.head_dim])

    def call(self, x: tf.Tensor, mask: tf.Tensor, cache: Optional[Tuple[tf.Tensor, tf.Tensor]] = None,
             cache_index=None, training=None, last_query_only: bool = False, query=None):
        """With ``last_query_only`` only the last token queries (``mask`` ``(B, 1, T)``):
        keys/values still come from every token; the output is ``(B, 1, d)``.
        ``query``: the queries' input when it differs from the keys'/values' ``x`` (same
        shape; pre-LN SASRec queries with ``LayerNorm(x)``)."""
        query = x if query is None else query
        q = self._split_heads(dense_2d(self.query_dense, query[:, -1:] if last_query_only else query))
        k = self._split_heads(dense_2d(self.key_dense, x))
        v = self._split_heads(dense_2d(self.value_dense, x))
        if cache is not None:
            return self._cached_step(q, k, v, mask, cache, cache_index, training)
        scores = tf.einsum("bqhd,bkhd->bhqk", q, k) * tf.cast(1.0 / math.sqrt(self.head_dim), q.dtype)
        scores = tf.where(mask[:, None, :, :], scores, _neg_inf(scores.dtype))
        probs = tf.nn.softmax(scores, axis=-1)
        probs = self.attention_dropout(probs, training=training)
        context = tf.einsum("bhqk,bkhd->bqhd", probs, v)
        b, t = tf.shape(context)[0], tf.shape(context)[1]
        context = tf.reshape(context, [b, t, self.hidden_size])
        return dense_2d(self.output_dense, context), (k, v)

    def _cached_step(self, q, k, v, mask, cache, cache_index, training):
        """One new token (``q``/``k``/``v`` ``(B, 1, H, Dh)``) against the cache.

        The cache is split in two (see :func:`make_cache`): the step-0 item keys/values,
        stored once in ``(B, H, L, Dh)`` layout and never written again, and a small
        preallocated reasoning part ``(B, S, H, Dh)`` whose slot ``cache_index`` receives
        the new token. Scores against both parts are concatenated before one softmax
        (exactly attention over ``[items, reasoning tokens]``), and batched matmuls read
        the item part in place: a step costs O(B·(L + S)·d) reads and O(B·S·d) writes
        instead of copying (and transposing) the whole ``(B, L + S, d)`` cache.
        """
        key_items, value_items, key_reason, value_reason = cache
        slots = _slot_indices(key_reason, cache_index)
        key_reason = tf.tensor_scatter_nd_update(key_reason, slots, k[:, 0])
        value_reason = tf.tensor_scatter_nd_update(value_reason, slots, v[:, 0])
        qh = tf.transpose(q, [0, 2, 1, 3])  # (B, H, 1, Dh)
        scale = tf.cast(1.0 / math.sqrt(self.head_dim), q.dtype)
        scores = tf.concat([
            tf.matmul(qh, key_items, transpose_b=True),
            tf.matmul(qh, tf.transpose(key_reason, [0, 2, 1, 3]), transpose_b=True),
        ], axis=-1) * scale  # (B, H, 1, L + S)
        scores = tf.where(mask[:, None, :, :], scores, _neg_inf(scores.dtype))
        probs = tf.nn.softmax(scores, axis=-1)
        probs = self.attention_dropout(probs, training=training)
        length = tf.shape(key_items)[2]
        context = (tf.matmul(probs[..., :length], value_items)
                   + tf.matmul(probs[..., length:], tf.transpose(value_reason, [0, 2, 1, 3])))
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, 1, self.hidden_size])
        return dense_2d(self.output_dense, context), (key_items, value_items, key_reason,
                                                      value_reason)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_heads=self.num_heads, hidden_size=self.hidden_size,
                   dropout=self.dropout, initializer_range=self.initializer_range,
                   salt=self.salt, qkv_init=self.qkv_init)
        return cfg


def make_cache(keys: tf.Tensor, values: tf.Tensor, extra_slots: int):
    """The cache of one attention layer after step 0 from its item ``keys``/``values``
    ``(B, L, H, Dh)``: ``(keys (B, H, L, Dh), values (B, H, L, Dh), reasoning keys,
    reasoning values (B, S, H, Dh) zeros)`` with ``S = extra_slots``. Shapes never change
    afterwards (loop-invariant)."""
    shape = tf.shape(keys)
    empty = tf.zeros([shape[0], extra_slots, shape[2], shape[3]], keys.dtype)
    return (tf.transpose(keys, [0, 2, 1, 3]), tf.transpose(values, [0, 2, 1, 3]),
            empty, empty)


def _slot_indices(cache: tf.Tensor, index) -> tf.Tensor:
    """Indices ``[[b, index] for b in batch]`` for writing one slot of a (B, T, H, D) cache."""
    b = tf.shape(cache)[0]
    index = tf.cast(index, tf.int32)
    return tf.stack([tf.range(b), tf.fill([b], index)], axis=1)
