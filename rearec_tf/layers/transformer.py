"""Transformer encoder layers with a KV cache.

:class:`TransformerLayer`, post-LN (RecBole/ReaRec release layout):
``h -> a = LN(h + Dropout(MHA(h)))`` then ``out = LN(a + Dropout(FFN(a)))`` with
``FFN(x) = W2 gelu_erf(W1 x + b1) + b2``; LayerNorm eps 1e-12 by default.

:class:`PreLNTransformerLayer`, the SASRec reference code's layout (Kang & McAuley;
pmixer/SASRec.pytorch): ``q = LN(h)``, ``a = q + MHA(queries q, keys/values h)``, then
``f = LN(a)``, ``out = f + Dropout(W2 Dropout(relu(W1 f + b1)) + b2)``.
"""
from __future__ import annotations

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.layers.activations import gelu
from rearec_tf.layers.attention import CachedMultiHeadAttention, dense_2d, normal_init
from rearec_tf.layers.randomness import SeededDropout


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class TransformerLayer(tf.keras.layers.Layer):
    """One post-LN encoder layer; ``call`` returns ``(out, (keys, values))``.

    Without ``cache`` it processes a whole sequence with a boolean mask ``(B, T, T)``.
    With ``cache`` (:func:`rearec_tf.layers.attention.make_cache`) and ``cache_index=i``
    it processes reasoning token ``i`` (``x`` of shape ``(B, 1, d)``, mask
    ``(B, 1, L + S)``) and returns the cache with that slot written.
    """

    def __init__(self, hidden_size: int, num_heads: int, ffn_size: int,
                 hidden_dropout: float = 0.5, attention_dropout: float = 0.5,
                 layer_norm_eps: float = 1e-12, initializer_range: float = 0.02, salt: int = 0,
                 qkv_init: str = "normal", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.ffn_size = ffn_size
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.salt = salt
        self.qkv_init = qkv_init
        self.attention = CachedMultiHeadAttention(num_heads, hidden_size, attention_dropout,
                                                  initializer_range, salt=salt + 1,
                                                  qkv_init=qkv_init, name="attention")
        self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=layer_norm_eps,
                                                                 name="attention_norm")
        self.ffn_inner = tf.keras.layers.Dense(ffn_size, kernel_initializer=normal_init(initializer_range), name="ffn_inner")
        self.ffn_outer = tf.keras.layers.Dense(hidden_size, kernel_initializer=normal_init(initializer_range), name="ffn_outer")
        self.ffn_norm = tf.keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="ffn_norm")
        self.dropout1 = SeededDropout(hidden_dropout, salt=salt + 2)
        self.dropout2 = SeededDropout(hidden_dropout, salt=salt + 3)

    def build(self, input_shape):
        shape = tf.TensorShape([None, None, self.hidden_size])
        self.attention.build(shape)
        self.attention_norm.build(shape)
        self.ffn_inner.build(shape)
        self.ffn_outer.build(tf.TensorShape([None, None, self.ffn_size]))
        self.ffn_norm.build(shape)
        super().build(input_shape)

    def call(self, x, mask, cache=None, cache_index=None, training=None,
             last_query_only: bool = False):
        """``last_query_only``: compute keys/values for every token but the rest of the
        layer only for the last one (output ``(B, 1, d)``) — all a final layer needs when
        only the last position's state is used."""
        if last_query_only:
            mask = mask[:, -1:, :]
        attended, kv = self.attention(x, mask, cache=cache, cache_index=cache_index,
                                      training=training, last_query_only=last_query_only)
        if last_query_only:
            x = x[:, -1:]
        a = self.attention_norm(x + self.dropout1(attended, training=training))
        f = dense_2d(self.ffn_outer, gelu(dense_2d(self.ffn_inner, a), training=training))
        out = self.ffn_norm(a + self.dropout2(f, training=training))
        return out, kv

    def get_config(self):
        cfg = super().get_config()
        cfg.update(hidden_size=self.hidden_size, num_heads=self.num_heads, ffn_size=self.ffn_size,
                   hidden_dropout=self.hidden_dropout, attention_dropout=self.attention_dropout,
                   layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range,
                   salt=self.salt, qkv_init=self.qkv_init)
        return cfg


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class PreLNTransformerLayer(TransformerLayer):
    """One pre-LN SASRec block (module docstring); same weights and cache contract as
    :class:`TransformerLayer`. Keys and values come from the raw input, so the KV cache
    stores the same thing for a reasoning token as for an item."""

    def call(self, x, mask, cache=None, cache_index=None, training=None,
             last_query_only: bool = False):
        if last_query_only:
            mask = mask[:, -1:, :]
        q = self.attention_norm(x)
        attended, kv = self.attention(x, mask, cache=cache, cache_index=cache_index,
                                      training=training, last_query_only=last_query_only,
                                      query=q)
        if last_query_only:
            q = q[:, -1:]
        f = self.ffn_norm(q + attended)
        inner = self.dropout1(tf.nn.relu(dense_2d(self.ffn_inner, f)), training=training)
        out = f + self.dropout2(dense_2d(self.ffn_outer, inner), training=training)
        return out, kv
