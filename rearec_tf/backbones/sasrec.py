"""SASRec backbone exactly as the ReaRec release builds it (SPEC §2).

- Item table ``E`` of ``num_items + 1`` rows (row 0 = padding), learned absolute
  position table of ``max_len`` rows; position ids count real items from the oldest
  (``cumsum(item != 0) - 1``), as the release computes them.
- Input LayerNorm + input dropout on the token embeddings (and on every reasoning token).
- Post-LN Transformer layers (biases, GELU-erf, LayerNorm eps 1e-12), causal + key-padding
  attention mask, no final LayerNorm.
- All weights ~ N(0, initializer_range); scores are dot products with the tied ``E``.

Sequences are left-padded with 0, newest item in the last slot, so the step-0 user
state ``r0`` is ``hidden[:, -1]``.
"""
from __future__ import annotations

import math
from typing import Optional

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.base import SequentialBackbone
from rearec_tf.layers.attention import make_cache, normal_init
from rearec_tf.layers.randomness import SeededDropout
from rearec_tf.layers.transformer import TransformerLayer


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class SASRecBackbone(SequentialBackbone):
    bidirectional_items = False
    """Item tokens attend to every real item (True, BERT4Rec) or only to earlier ones."""
    layer_class = TransformerLayer
    """The encoder block (post-LN here; pre-LN in ``sasrec_preln``)."""
    input_layer_norm = True
    """Whether tokens go through a LayerNorm before the first layer (SPEC §2: yes)."""
    scale_item_embeddings = False
    """Whether item embeddings are multiplied by √d before positions are added."""

    def __init__(self, num_items: int, max_len: int = 50, hidden_size: int = 256,
                 num_layers: int = 2, num_heads: int = 2, ffn_size: int = 300,
                 hidden_dropout: float = 0.5, attention_dropout: float = 0.5,
                 input_dropout: float = 0.2, layer_norm_eps: float = 1e-12,
                 initializer_range: float = 0.02, qkv_init: str = "normal", **kwargs):
        super().__init__(**kwargs)
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.ffn_size = ffn_size
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.input_dropout = input_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.qkv_init = qkv_init
        self.input_norm = (tf.keras.layers.LayerNormalization(epsilon=layer_norm_eps,
                                                               name="input_norm")
                           if self.input_layer_norm else None)
        self.input_drop = SeededDropout(input_dropout, salt=1)
        self.encoder_layers = [
            self.layer_class(hidden_size, num_heads, ffn_size, hidden_dropout, attention_dropout,
                             layer_norm_eps, initializer_range, salt=10 * (i + 1),
                             qkv_init=qkv_init, name=f"layer_{i}")
            for i in range(num_layers)
        ]

    def build(self, input_shape=None):
        self.item_embedding = self.add_weight(
            name="item_embedding", shape=(self.num_items + 1, self.hidden_size), initializer=normal_init(self.initializer_range))
        self.position_embedding = self.add_weight(
            name="position_embedding", shape=(self.max_len, self.hidden_size), initializer=normal_init(self.initializer_range))
        shape = tf.TensorShape([None, None, self.hidden_size])
        if self.input_norm is not None:
            self.input_norm.build(shape)
        for layer in self.encoder_layers:
            layer.build(shape)
        super().build(input_shape)

    @property
    def item_embeddings(self) -> tf.Variable:
        return self.item_embedding

    # ----------------------------------------------------------------- step 0
    def embed(self, item_ids):
        """Item + position embeddings ``(B, L, d)`` and the validity mask ``(B, L)``."""
        item_ids = tf.convert_to_tensor(item_ids)
        valid = tf.not_equal(item_ids, 0)
        positions = tf.maximum(tf.cumsum(tf.cast(valid, tf.int32), axis=1) - 1, 0)
        items = tf.gather(self.item_embedding, item_ids)
        if self.scale_item_embeddings:
            items *= tf.cast(math.sqrt(self.hidden_size), items.dtype)
        x = items + tf.gather(self.position_embedding, positions)
        return x, valid

    def encode(self, item_ids, extra_slots: int = 0, training=None, last_only: bool = False):
        """Step 0. ``last_only``: the final layer computes its output for the last position
        only (``hidden`` is then ``(B, 1, d)``), still caching every position's keys and
        values — the reasoning loop and prefix-sample training need nothing else."""
        if not self.built:
            self.build(None)
        x, valid = self.embed(item_ids)
        length = tf.shape(item_ids)[1]
        h = self.input_transform(x, training)
        mask = self.attention_mask(valid, length)
        layer_caches = []
        last = len(self.encoder_layers) - 1
        for i, layer in enumerate(self.encoder_layers):
            h, (k, v) = layer(h, mask, training=training, last_query_only=last_only and i == last)
            layer_caches.append(make_cache(k, v, extra_slots))
        cache = {"valid": valid, "layers": tuple(layer_caches)}
        return self.output_transform(h), cache

    def input_transform(self, x, training=None):
        """What every token (item or reasoning) goes through before the first layer:
        input LayerNorm (when ``input_layer_norm``) + dropout."""
        if self.input_norm is not None:
            x = self.input_norm(x)
        return self.input_drop(x, training=training)

    def output_transform(self, h):
        """What the last layer's output goes through (nothing here; a final LayerNorm in
        ``sasrec_preln``)."""
        return h

    # -------------------------------------------------------- reasoning steps
    def step(self, token, cache, step, training=None):
        valid = cache["valid"]
        slots = tf.shape(cache["layers"][0][2])[1]
        step = tf.cast(step, tf.int32)
        # Reasoning token `step` sees every real item and reasoning tokens up to itself.
        extra = tf.range(slots) <= step
        batch = tf.shape(valid)[0]
        key_mask = tf.concat([valid, tf.broadcast_to(extra[None, :], [batch, slots])], axis=1)
        mask = key_mask[:, None, :]
        h = self.input_transform(token[:, None, :], training)
        new_layers = []
        for layer, kv in zip(self.encoder_layers, cache["layers"]):
            h, kv = layer(h, mask, cache=kv, cache_index=step, training=training)
            new_layers.append(kv)
        return self.output_transform(h)[:, 0], {"valid": valid, "layers": tuple(new_layers)}

    def attention_mask(self, valid, num_items):
        """``(B, T, T)`` bool mask for ``T`` tokens whose first ``num_items`` are items.

        Keys must be valid (not padding). Causal everywhere for SASRec; with
        ``bidirectional_items`` (BERT4Rec's prefix masking) an item token also sees later
        items, but never a reasoning token, which is what keeps the step-0 KV cache valid
        while reasoning tokens are appended.
        """
        total = tf.shape(valid)[1]
        allowed = tf.linalg.band_part(tf.ones([total, total], tf.bool), -1, 0)
        if self.bidirectional_items:
            idx = tf.range(total)
            item = idx < num_items
            allowed = tf.logical_or(allowed, tf.logical_and(item[:, None], item[None, :]))
        return tf.logical_and(allowed[None], valid[:, None, :])

    def encode_extended(self, item_ids, reasoning_tokens, training=None):
        """Recompute ``[items, t_1, ..., t_k]`` from scratch (no cache), for tests.

        ``reasoning_tokens`` ``(B, k, d)`` are pre-LayerNorm reasoning inputs; returns the
        final-layer outputs ``(B, L + k, d)`` under the causal + padding mask.
        """
        x, valid = self.embed(item_ids)
        x = tf.concat([x, reasoning_tokens], axis=1)
        k = tf.shape(reasoning_tokens)[1]
        valid = tf.concat([valid, tf.ones([tf.shape(valid)[0], k], tf.bool)], axis=1)
        h = self.input_transform(x, training)
        mask = self.attention_mask(valid, tf.shape(item_ids)[1])
        for layer in self.encoder_layers:
            h, _ = layer(h, mask, training=training)
        return self.output_transform(h)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_items=self.num_items, max_len=self.max_len, hidden_size=self.hidden_size,
                   num_layers=self.num_layers, num_heads=self.num_heads, ffn_size=self.ffn_size,
                   hidden_dropout=self.hidden_dropout, attention_dropout=self.attention_dropout,
                   input_dropout=self.input_dropout, layer_norm_eps=self.layer_norm_eps,
                   initializer_range=self.initializer_range, qkv_init=self.qkv_init)
        return cfg

    @classmethod
    def from_config_object(cls, config, num_items: int, name: Optional[str] = "sasrec"):
        """Build from a :class:`rearec_tf.config.Config`."""
        return cls(num_items=num_items, max_len=config.max_len, hidden_size=config.hidden_size,
                   num_layers=config.num_layers, num_heads=config.num_heads,
                   ffn_size=config.ffn_size, hidden_dropout=config.hidden_dropout,
                   attention_dropout=config.attention_dropout, input_dropout=config.input_dropout,
                   layer_norm_eps=config.layer_norm_eps,
                   initializer_range=config.initializer_range, qkv_init=config.qkv_init,
                   name=name)
