"""The base objective: next-item cross-entropy on the step-0 state (plain SASRec)."""
from __future__ import annotations

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.tasks.recommendation import RecommendationLoss


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class NextItemObjective(tf.keras.layers.Layer):
    """CE of ``r0 · Eᵀ / τ``; inference representation ``r0``.

    ``call(R, targets, item_table)`` with ``R`` ``(B, S, d)`` uses ``R[:, 0]``.
    ``all_positions(hidden, targets, item_table)`` is the SASRec-style loss on every
    position of ``hidden`` ``(B, L, d)`` whose target ``(B, L)`` is not padding (0).
    """

    steps_used = 0

    def __init__(self, rec_loss: RecommendationLoss, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.rec_loss = rec_loss
        self.temperature = temperature

    def aggregate(self, R):
        return R[:, 0]

    def call(self, R, targets, item_table, R_noisy=None):
        loss = self.rec_loss(R[:, 0], targets, item_table, self.temperature)
        return {"loss": loss, "rec": loss}

    def all_positions(self, hidden, targets, item_table):
        d = tf.shape(hidden)[-1]
        keep = tf.reshape(targets, [-1]) > 0
        query = tf.boolean_mask(tf.reshape(hidden, [-1, d]), keep)
        labels = tf.boolean_mask(tf.reshape(targets, [-1]), keep)
        loss = self.rec_loss(query, labels, item_table, self.temperature)
        return {"loss": loss, "rec": loss}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(temperature=self.temperature)
        return cfg
