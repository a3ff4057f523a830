"""Ensemble Reasoning Learning (SPEC §4).

``L_ERL = L_rec + λ · L_KL`` with

- ``L_rec``: CE of the mean-pooled state ``(1/(K+1)) Σ_k r_k`` (``pooled``, paper v3 and
  release) or the sum over steps of each step's CE (``per_step``, paper v1/v2);
- ``L_KL = −KLpart``, the negative pairwise KL between the steps' item distributions
  ``p_k = softmax(r_k Eᵀ / τ)``, ``KL[b, i, j] = KL(p_j ‖ stopgrad(p_i))``:
  ``ordered`` (release) averages over all ordered pairs i ≠ j; ``upper`` (the paper's
  ``−Σ_{i<j} KL(ŷ_i ‖ ŷ_j)``) sums ``KL(p_i ‖ stopgrad(p_j))`` over i < j.

The KL is computed as ``Σ_n p_j log p_j − Σ_n p_j log q_i`` with one einsum over the item
axis, never materialising a ``(B, T, T, N)`` tensor. Inference uses the mean of r0..rK.
"""
from __future__ import annotations

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.tasks.recommendation import RecommendationLoss, sparse_ce


def pairwise_kl(logits):
    """``KL[b, i, j] = KL(softmax(logits[b, j]) ‖ stopgrad(softmax(logits[b, i])))``.

    ``logits`` ``(B, S, N)`` → ``(B, S, S)``, in closed form from one softmax pass:
    with ``lse = logsumexp(z)``, ``Σ_n p_j log p_j = Σ_n p_j z_j − lse_j`` and
    ``Σ_n p_j log q_i = Σ_n p_j z_i − lse_i`` (an einsum over the item axis), so nothing
    larger than ``(B, S, N)`` is built and no log-softmax tensor is materialised.
    """
    z = tf.cast(logits, tf.float32)
    lse = tf.reduce_logsumexp(z, axis=-1)                                 # (B, S)
    p = tf.exp(z - lse[..., None])                                        # (B, S, N)
    self_term = tf.reduce_sum(p * z, axis=-1) - lse                       # (B, S) [j]
    cross = (tf.einsum("bjn,bin->bji", p, tf.stop_gradient(z))
             - tf.stop_gradient(lse)[:, None, :])                         # (B, j, i)
    return self_term[:, None, :] - tf.transpose(cross, [0, 2, 1])


def kl_part(kl, pairs: str = "ordered"):
    """Reduce the ``(B, S, S)`` KL matrix to the (positive) diversity term."""
    s = tf.shape(kl)[1]
    if pairs == "ordered":
        off = 1.0 - tf.eye(s, dtype=kl.dtype)
        n = tf.cast(tf.shape(kl)[0] * s * (s - 1), kl.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(kl * off[None]), n)
    if pairs == "upper":
        # KL(p_i ‖ sg p_j) for i < j is KL[b, j, i]: the strictly lower triangle.
        lower = tf.linalg.band_part(tf.ones([s, s], kl.dtype), -1, 0) - tf.eye(s, dtype=kl.dtype)
        return tf.reduce_mean(tf.reduce_sum(kl * lower[None], axis=[1, 2]))
    raise ValueError(f"erl pairs={pairs!r}; choose 'ordered' or 'upper'")


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class ERLObjective(tf.keras.layers.Layer):
    """ERL loss on ``R`` ``(B, K+1, d)``; returns ``{"loss", "rec", "kl"}``."""

    def __init__(self, rec_loss: RecommendationLoss, temperature: float = 0.5,
                 kl_weight: float = 0.05, rec_variant: str = "pooled", pairs: str = "ordered",
                 **kwargs):
        super().__init__(**kwargs)
        if rec_variant not in ("pooled", "per_step"):
            raise ValueError(f"erl rec_variant={rec_variant!r}; choose 'pooled' or 'per_step'")
        self.rec_loss = rec_loss
        self.temperature = temperature
        self.kl_weight = kl_weight
        self.rec_variant = rec_variant
        self.pairs = pairs

    def aggregate(self, R):
        return tf.reduce_mean(R, axis=1)

    def call(self, R, targets, item_table, R_noisy=None):
        steps = R.shape[1]
        if self.rec_loss.mode == "full_softmax":
            # One (B, S, N) product serves both terms: scores are linear in the state, so
            # the pooled state's logits are the mean of the steps' logits.
            logits = self.rec_loss.logits(R, targets, item_table, self.temperature)
            if self.rec_variant == "pooled":
                rec = sparse_ce(tf.reduce_mean(logits, axis=1), targets)
            else:
                rec = tf.add_n([sparse_ce(logits[:, k], targets) for k in range(steps)])
        else:
            logits = None
            if self.rec_variant == "pooled":
                rec = self.rec_loss(self.aggregate(R), targets, item_table, self.temperature)
            else:
                rec = tf.add_n([self.rec_loss(R[:, k], targets, item_table, self.temperature)
                                for k in range(steps)])
        if steps is not None and steps < 2:
            kl = tf.zeros([], tf.float32)
        else:
            if logits is None:
                logits = self.rec_loss.logits(R, targets, item_table, self.temperature)
            kl = kl_part(pairwise_kl(logits), self.pairs)
        return {"loss": rec - self.kl_weight * kl, "rec": rec, "kl": kl}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(temperature=self.temperature, kl_weight=self.kl_weight,
                   rec_variant=self.rec_variant, pairs=self.pairs)
        return cfg
