"""The recommendation (next-item) loss shared by every objective.

Two modes, chosen by ``Config.loss``:

``full_softmax``
    Exact cross-entropy over the whole catalogue: logits ``u · Eᵀ / τ`` against every
    row of the tied item table (the padding row included, as the release computes it;
    the model learns to score it low and evaluation masks it).
``retrieval``
    A :class:`tfrs.tasks.Retrieval` task: in-batch negatives (the batch's target items
    are the candidates), log-Q correction with the items' training frequencies and
    removal of accidental hits (a negative that is the same item as the positive).
    For catalogues too large for a full softmax.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

import rearec_tf._env  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs

from rearec_tf.config import SCORING_DTYPES

MODES = ("full_softmax", "retrieval")


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class RecommendationLoss(tf.keras.layers.Layer):
    """``loss(query, targets, item_table, temperature)`` → mean next-item CE.

    Args:
      mode: ``full_softmax`` or ``retrieval``.
      item_counts: training frequency of each item index (row 0 = padding), used for
        the log-Q correction in ``retrieval`` mode.
      logq_correction / remove_accidental_hits: ``retrieval`` mode options.
      scoring_dtype: dtype of the full-catalogue scoring product (forward and both
        gradient products): ``float32``, or ``bfloat16`` (inputs rounded to bfloat16,
        logits back in float32 before the softmax).
    """

    def __init__(self, mode: str = "full_softmax", item_counts: Optional[np.ndarray] = None,
                 logq_correction: bool = True, remove_accidental_hits: bool = True,
                 scoring_dtype: str = "float32", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"loss mode {mode!r}; choose one of {MODES}")
        if scoring_dtype not in SCORING_DTYPES:
            raise ValueError(f"scoring_dtype {scoring_dtype!r}; choose one of {SCORING_DTYPES}")
        self.mode = mode
        self.scoring_dtype = scoring_dtype
        self.logq_correction = logq_correction and item_counts is not None
        self.remove_accidental_hits = remove_accidental_hits
        self._log_q = None
        if mode == "retrieval":
            if self.logq_correction:
                counts = np.asarray(item_counts, np.float64)
                prob = np.maximum(counts, 1.0) / np.maximum(counts, 1.0).sum()
                self._log_q = tf.constant(prob.astype(np.float32))
            self.task = tfrs.tasks.Retrieval(
                loss=tf.keras.losses.CategoricalCrossentropy(
                    from_logits=True, reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE),
                remove_accidental_hits=remove_accidental_hits)

    def call(self, query, targets, item_table, temperature: float = 1.0):
        """Mean CE of ``query`` ``(B, d)`` predicting ``targets`` ``(B,)``."""
        query = query / tf.cast(temperature, query.dtype)
        if self.mode == "full_softmax":
            logits = self._catalogue_logits("bd,nd->bn", query, item_table)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=targets, logits=tf.cast(logits, tf.float32)))
        candidates = tf.gather(item_table, targets)
        return self.task(query, candidates,
                         candidate_sampling_probability=self._sampling_prob(targets),
                         candidate_ids=targets if self.remove_accidental_hits else None,
                         compute_metrics=False, compute_batch_metrics=False)

    def logits(self, queries, targets, item_table, temperature: float = 1.0):
        """Logits of ``queries`` ``(B, S, d)`` over this mode's candidates.

        ``full_softmax``: ``(B, S, N)`` over the catalogue. ``retrieval``: ``(B, S, B)``
        over the batch's target items, log-Q corrected, accidental hits masked.
        """
        queries = queries / tf.cast(temperature, queries.dtype)
        if self.mode == "full_softmax":
            return self._catalogue_logits("bsd,nd->bsn", queries, item_table)
        candidates = tf.gather(item_table, targets)
        logits = tf.einsum("bsd,cd->bsc", queries, candidates)
        if self._log_q is not None:
            logits -= tf.math.log(self._sampling_prob(targets))[None, None, :]
        if self.remove_accidental_hits:
            same = tf.equal(targets[:, None], targets[None, :])
            hit = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(targets)[0], dtype=tf.bool)))
            logits = tf.where(hit[:, None, :], tf.cast(-1e9, logits.dtype), logits)
        return logits

    def _catalogue_logits(self, equation, queries, item_table):
        if self.scoring_dtype == "float32":
            return tf.einsum(equation, queries, item_table)
        low = tf.as_dtype(self.scoring_dtype)
        return tf.cast(tf.einsum(equation, tf.cast(queries, low), tf.cast(item_table, low)),
                       tf.float32)

    def _sampling_prob(self, targets):
        if self._log_q is None:
            return None
        return tf.gather(self._log_q, targets)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(mode=self.mode, logq_correction=self.logq_correction,
                   remove_accidental_hits=self.remove_accidental_hits,
                   scoring_dtype=self.scoring_dtype)
        return cfg


def sparse_ce(logits, labels):
    """Mean sparse softmax cross-entropy in float32."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)))
