"""Progressive Reasoning Learning (SPEC §5).

- Progressive temperature annealing: step k is scored at ``τ_k = τ · α^(K−k)`` (the last
  step at τ). Loss ``CE(r_K/τ) + w_pl · PL + w_cl · RCL`` where ``PL`` is the ``mean``
  over the earlier steps of their CE (release) or their ``sum`` (paper Eq. 10).
- Reasoning-aware contrastive learning (after a warm-up): a noisy branch whose reasoning
  inputs are the clean states plus Gaussian noise (see
  :meth:`rearec_tf.reasoning.ReasoningLoop.call` with ``noisy_branch=True``); for each
  k = 1..K, InfoNCE with the noisy ``r̃_k`` as anchor, the clean ``r_k`` of the same
  sequence as positive and the clean ``r_k`` of the other sequences as negatives, raw dot
  products / τ, averaged over batch·K.
- Inference uses ``r_K``.
"""
from __future__ import annotations

from typing import List

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.tasks.recommendation import RecommendationLoss, sparse_ce


def step_temperatures(tau: float, alpha: float, steps: int) -> List[float]:
    """``[τ·α^K, τ·α^(K−1), …, τ·α, τ]`` for steps 0..K."""
    return [tau * alpha ** (steps - k) for k in range(steps)] + [tau]


def reasoning_contrastive_loss(R_noisy, R_clean, temperature: float):
    """InfoNCE over steps 1..K: ``S[b, t, c] = r̃[b, t] · r[c, t] / τ``, target ``c = b``."""
    anchors, positives = R_noisy[:, 1:], R_clean[:, 1:]
    sim = tf.einsum("btd,ctd->btc", anchors, positives) / tf.cast(temperature, anchors.dtype)
    b, k = tf.shape(sim)[0], tf.shape(sim)[1]
    labels = tf.tile(tf.range(b)[:, None], [1, k])
    return sparse_ce(sim, labels)


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class PRLObjective(tf.keras.layers.Layer):
    """PRL loss on ``R`` ``(B, K+1, d)`` (and ``R_noisy`` once contrastive learning is on);
    returns ``{"loss", "rec", "pl", "cl"}``."""

    def __init__(self, rec_loss: RecommendationLoss, temperature: float = 0.5,
                 alpha: float = 5.0, pl_weight: float = 1.0, cl_weight: float = 1.0,
                 step_weighting: str = "mean", noise_std: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if step_weighting not in ("mean", "sum"):
            raise ValueError(f"prl step_weighting={step_weighting!r}; choose 'mean' or 'sum'")
        self.rec_loss = rec_loss
        self.temperature = temperature
        self.alpha = alpha
        self.pl_weight = pl_weight
        self.cl_weight = cl_weight
        self.step_weighting = step_weighting
        self.noise_std = noise_std

    def aggregate(self, R):
        return R[:, -1]

    def call(self, R, targets, item_table, R_noisy=None):
        steps = R.shape[1] - 1
        temps = step_temperatures(self.temperature, self.alpha, steps)
        rec = self.rec_loss(R[:, steps], targets, item_table, self.temperature)
        pl = tf.zeros([], tf.float32)
        if steps > 0:
            parts = [self.rec_loss(R[:, k], targets, item_table, temps[k]) for k in range(steps)]
            pl = tf.add_n(parts)
            if self.step_weighting == "mean":
                pl = pl / steps
        cl = tf.zeros([], tf.float32)
        if R_noisy is not None and steps > 0:
            cl = reasoning_contrastive_loss(R_noisy, R, self.temperature)
        loss = rec + self.pl_weight * pl + self.cl_weight * cl
        return {"loss": loss, "rec": rec, "pl": pl, "cl": cl}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(temperature=self.temperature, alpha=self.alpha, pl_weight=self.pl_weight,
                   cl_weight=self.cl_weight, step_weighting=self.step_weighting,
                   noise_std=self.noise_std)
        return cfg
