"""Ensemble Reasoning Learning (SPEC §4).

``L_ERL = L_rec + λ · L_KL`` with

- ``L_rec``: CE of the mean-pooled state ``(1/(K+1)) Σ_k r_k`` (``pooled``, paper v3 and
  release) or the sum over steps of each step's CE (``per_step``, paper v1/v2);
- ``L_KL = −KLpart``, the negative pairwise KL between the steps' item distributions
  ``p_k = softmax(r_k Eᵀ / τ)``, ``KL[b, i, j] = KL(p_j ‖ stopgrad(p_i))``:
  ``ordered`` (release) averages over all ordered pairs i ≠ j; ``upper`` (the paper's
  ``−Σ_{i<j} KL(ŷ_i ‖ ŷ_j)``) sums ``KL(p_i ‖ stopgrad(p_j))`` over i < j.

The KL is computed as ``Σ_n p_j log p_j − Σ_n p_j log q_i`` with one einsum over the item
axis, never materialising a ``(B, T, T, N)`` tensor, and has a closed-form gradient.
Inference uses the mean of r0..rK.
"""
from __future__ import annotations

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.tasks.recommendation import RecommendationLoss, sparse_ce


def pairwise_kl(logits):
    """``KL[b, i, j] = KL(softmax(logits[b, j]) ‖ stopgrad(softmax(logits[b, i])))``.

    ``logits`` ``(B, S, N)`` → ``(B, S, S)``, in closed form from one softmax pass:
    with ``lse = logsumexp(z)`` and ``C[b, j, i] = Σ_n p_j z_i`` (one einsum over the item
    axis), ``KL[b, i, j] = (C[j, j] − lse_j) − (C[j, i] − lse_i)``. Nothing larger than
    ``(B, S, N)`` is built. The gradient is closed-form too (see ``_pairwise_kl_grad``):
    autodiff through the softmax and the einsum would make about three times as many
    passes over the ``(B, S, N)`` logits, and those passes are most of ERL's extra cost.
    """
    return _pairwise_kl(tf.cast(logits, tf.float32))


@tf.custom_gradient
def _pairwise_kl(z):
    lse = tf.reduce_logsumexp(z, axis=-1)                                 # (B, S)
    p = tf.exp(z - lse[..., None])                                        # (B, S, N)
    c = tf.einsum("bjn,bin->bji", p, z)                                   # (B, j, i)
    self_term = tf.linalg.diag_part(c) - lse                              # (B, S) [j]
    cross = c - lse[:, None, :]                                           # (B, j, i)
    kl = self_term[:, None, :] - tf.transpose(cross, [0, 2, 1])           # (B, i, j)

    def grad(g):
        return _pairwise_kl_grad(g, z, p, c)

    return kl, grad


def _pairwise_kl_grad(g, z, p, c):
    """``∂L/∂z_j = p_j ⊙ (Σ_i G_ij · (z_j − z_i) − s_j)`` for upstream ``G = ∂L/∂KL``.

    Only ``p_j`` depends on ``z_j`` (the ``i`` side is stop-gradient). Differentiating
    ``KL_ij = Σ_n p_j (z_j − z_i) − lse_j + const`` through the softmax gives
    ``p_j ⊙ (z_j − z_i − E_{p_j}[z_j − z_i])``, and ``E_{p_j}[z_i] = C[j, i]``, so the
    centring term is ``s_j = Σ_i G_ij (C[j, j] − C[j, i])``, a ``(B, S)`` tensor.
    """
    g = tf.cast(g, z.dtype)                                               # (B, i, j)
    g_j = tf.reduce_sum(g, axis=1)                                        # (B, j)
    mixed = tf.einsum("bij,bin->bjn", g, z)                               # Σ_i G_ij z_i
    s = g_j * tf.linalg.diag_part(c) - tf.einsum("bij,bji->bj", g, c)     # (B, j)
    return p * (g_j[..., None] * z - mixed - s[..., None])


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
