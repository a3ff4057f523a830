"""The ReaRec latent reasoning loop (SPEC §3), one ``tf.while_loop``.

Step 0 encodes the item sequence and keeps every layer's keys/values in a cache
preallocated for the reasoning tokens to come; ``r0`` is the last position's output.
Step ``k = 1..K`` feeds ``r_{k-1} + P[k-1]`` (``P``: reasoning position embeddings) back
as one new token: the backbone applies its input LayerNorm and dropout, pushes only that
token through every layer, attending over the cache, and writes its keys/values at
slot ``L + k - 1``. The output ``R = [r0 .. rK]`` has shape ``(B, K + 1, d)``.

The loop has a fixed ``maximum_iterations`` and loop-invariant shapes (the cache and the
output buffer are preallocated and written at an index), so it traces once, compiles
under XLA, differentiates (gradients flow through the fed-back states and the cache)
and exports to a SavedModel. ``steps`` may be a Python int (static shapes) or a scalar
tensor (one graph serves every ``K' <= max_steps``).
"""
from __future__ import annotations

from typing import Optional

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.layers import randomness
from rearec_tf.layers.attention import normal_init

NOISE_SALT = 7777


def _write_row(buffer: tf.Tensor, index, row: tf.Tensor) -> tf.Tensor:
    """``buffer[:, index] = row`` for a ``(B, S, d)`` buffer, as a stock scatter op."""
    b = tf.shape(buffer)[0]
    idx = tf.stack([tf.range(b), tf.fill([b], tf.cast(index, tf.int32))], axis=1)
    return tf.tensor_scatter_nd_update(buffer, idx, row)


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class ReasoningLoop(tf.keras.layers.Layer):
    """Latent multi-step reasoning over any :class:`SequentialBackbone`.

    Args:
      backbone: the sequence encoder (``encode``/``step``/``item_embeddings``).
      steps: default number of reasoning steps K (K = 0 is the plain backbone).
      max_steps: rows of the reasoning position table; the largest K' accepted.
      initializer_range: std of the N(0, std) init of the position table.
    """

    def __init__(self, backbone, steps: int = 2, max_steps: int = 8,
                 initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= steps <= max_steps:
            raise ValueError(f"steps={steps} must be within [0, max_steps={max_steps}]")
        self.backbone = backbone
        self.steps = steps
        self.max_steps = max_steps
        self.initializer_range = initializer_range

    def build(self, input_shape=None):
        self.reasoning_position_embedding = self.add_weight(
            name="reasoning_position_embedding",
            shape=(max(self.max_steps, 1), self.backbone.hidden_size),
            initializer=normal_init(self.initializer_range))
        if not self.backbone.built:
            self.backbone.build(None)
        super().build(input_shape)

    def call(self, item_ids, steps=None, training=None, noisy_branch: bool = False,
             noise_std: float = 0.0, noise: Optional[tf.Tensor] = None,
             share_prefix: bool = False):
        """Run step 0 and ``steps`` reasoning steps.

        Returns ``R`` ``(B, steps + 1, d)``. With ``noisy_branch=True`` (PRL's
        reasoning-aware contrastive learning) the batch is duplicated before the input
        dropout; the copy's reasoning input at step k is the *clean* branch's
        ``r_{k-1} + P[k-1] + eps`` with ``eps ~ N(0, noise_std^2)`` (or ``noise[k-1]``
        when given, shape ``(K, B, d)``), and it keeps its own cache. Then returns
        ``(R_clean, R_noisy)``. ``share_prefix=True`` encodes the items once and gives
        the noisy copy the clean step-0 cache (same dropout masks for the item tokens,
        ``R_noisy[:, 0] == R_clean[:, 0]``), halving the step-0 cost; the reasoning
        steps still differ by the noise and their own dropout. Without dropout the two
        are identical.
        """
        steps = self.steps if steps is None else steps
        static = isinstance(steps, int)
        if static and not 0 <= steps <= self.max_steps:
            raise ValueError(f"steps={steps} must be within [0, max_steps={self.max_steps}]")
        slots = steps if static else self.max_steps
        if not static:
            steps = tf.clip_by_value(tf.cast(steps, tf.int32), 0, self.max_steps)

        item_ids = tf.convert_to_tensor(item_ids)
        batch = tf.shape(item_ids)[0]
        if noisy_branch and not share_prefix:
            item_ids = tf.concat([item_ids, item_ids], axis=0)
        hidden, cache = self.backbone.encode(item_ids, extra_slots=slots, training=training,
                                             last_only=True)
        r0 = hidden[:, -1]
        if noisy_branch and share_prefix:
            cache = tf.nest.map_structure(lambda t: tf.concat([t, t], axis=0), cache)
            r0 = tf.concat([r0, r0], axis=0)
        if slots == 0:
            return self._split(r0[:, None], batch, noisy_branch)

        buffer = tf.zeros([tf.shape(r0)[0], slots + 1, tf.shape(r0)[1]], r0.dtype)
        buffer = _write_row(buffer, 0, r0)
        table = tf.cast(self.reasoning_position_embedding, r0.dtype)

        def body(k, r, cache, buffer):
            token = r + table[k]
            if noisy_branch:
                clean = token[:batch]
                if noise is not None:
                    eps = tf.cast(tf.gather(noise, k), clean.dtype)
                else:
                    with randomness.folded(k + 1):
                        eps = randomness.normal(tf.shape(clean), noise_std, clean.dtype,
                                                salt=NOISE_SALT)
                token = tf.concat([clean, clean + eps], axis=0)
            with randomness.folded(k + 1):  # fresh dropout masks at every step
                out, cache = self.backbone.step(token, cache, k, training=training)
            return k + 1, out, cache, _write_row(buffer, k + 1, out)

        _, _, _, buffer = tf.while_loop(
            lambda k, *_: k < steps, body, (tf.constant(0), r0, cache, buffer),
            maximum_iterations=slots)
        if not static:
            buffer = buffer[:, : steps + 1]
        return self._split(buffer, batch, noisy_branch)

    @staticmethod
    def _split(R, batch, noisy_branch):
        if noisy_branch:
            return R[:batch], R[batch:]
        return R

    def recompute(self, item_ids, steps: int, training=None):
        """Reference path without a cache: recompute ``[items, r0+P0, r1+P1, ...]`` from
        scratch at every step. Used by tests to check the cached loop."""
        hidden = self.backbone.encode_extended(
            item_ids, tf.zeros([tf.shape(item_ids)[0], 0, self.backbone.hidden_size]), training)
        rs = [hidden[:, -1]]
        for k in range(steps):
            tokens = tf.stack([rs[j] + self.reasoning_position_embedding[j] for j in range(k + 1)], 1)
            rs.append(self.backbone.encode_extended(item_ids, tokens, training)[:, -1])
        return tf.stack(rs, axis=1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(backbone=tf.keras.layers.serialize(self.backbone), steps=self.steps,
                   max_steps=self.max_steps, initializer_range=self.initializer_range)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = tf.keras.layers.deserialize(config["backbone"])
        return cls(**config)
