"""The trainable ReaRec model: backbone + reasoning loop + objective, as a TFRS model.

``ReaRecModel`` subclasses :class:`tfrs.models.Model`: Keras ``fit`` calls its
``compute_loss``. With ``method='base'`` it is plain SASRec (K = 0).

Training phases (switched per epoch by :meth:`set_epoch`, which tells the caller to
rebuild the train function when the phase changes):

- ``warmup`` (epochs < ``warmup_epochs``): the backbone alone, base CE on r0;
- ``reason``: the method's objective with K reasoning steps;
- ``contrastive`` (PRL, epochs >= ``prl_warmup_epochs``): plus the noisy branch and RCL.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

import rearec_tf._env  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs

from rearec_tf.backbones import build_backbone
from rearec_tf.config import Config
from rearec_tf.layers import randomness
from rearec_tf.reasoning.loop import ReasoningLoop
from rearec_tf.tasks import NextItemObjective, RecommendationLoss, build_objective

LOSS_PARTS = ("rec", "kl", "pl", "cl")


class _MicroBatch:
    """Which micro-batch ``train_step`` is tracing (a plain object: not tracked by Keras)."""

    index: Optional[int] = None
    weight = 1.0


class ReaRecModel(tfrs.models.Model):
    """ReaRec (or plain SASRec for ``method='base'``) for ``num_items`` real items.

    Inputs are dicts: ``item_ids`` ``(B, L)`` int32 left-padded with 0 and either
    ``target`` ``(B,)`` (prefix samples) or ``targets`` ``(B, L)`` (all positions).
    ``item_features`` (:class:`rearec_tf.data.item_features.ItemFeatures`) feeds the
    ``feature`` backbone.
    """

    def __init__(self, config: Config, num_items: int,
                 item_counts: Optional[np.ndarray] = None, item_features=None,
                 name: str = "rearec", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config = config
        self.num_items = num_items
        self.backbone = build_backbone(config, num_items, item_features=item_features)
        self.reasoner = ReasoningLoop(self.backbone, steps=config.train_steps,
                                      max_steps=config.max_reason_steps,
                                      initializer_range=config.initializer_range,
                                      name="reasoning")
        self.rec_loss = RecommendationLoss(config.loss, item_counts=item_counts,
                                           logq_correction=config.logq_correction,
                                           remove_accidental_hits=config.remove_accidental_hits,
                                           scoring_dtype=config.scoring_dtype,
                                           name="rec_loss")
        self.objective = build_objective(config, self.rec_loss)
        self.base_objective = NextItemObjective(self.rec_loss, temperature=config.tau,
                                                name="base_objective")
        self.part_trackers = [tf.keras.metrics.Mean(name=f"loss_{p}") for p in LOSS_PARTS]
        self.epoch = 0
        self._micro = _MicroBatch()  # the micro-batch being traced (train_step)
        self.reasoner.build(None)

    # ------------------------------------------------------------------ phases
    def phase_for(self, epoch: int) -> str:
        cfg = self.config
        if cfg.method == "base":
            return "base"
        if epoch < cfg.warmup_epochs:
            return "warmup"
        if cfg.method == "prl" and cfg.prl_cl_weight > 0 and epoch >= cfg.prl_warmup_epochs:
            return "contrastive"
        return "reason"

    @property
    def phase(self) -> str:
        return self.phase_for(self.epoch)

    def set_epoch(self, epoch: int) -> bool:
        """Set the 0-based epoch; returns True if the training phase changed (the
        compiled train function is then dropped so Keras rebuilds it)."""
        changed = self.phase_for(epoch) != self.phase_for(self.epoch)
        self.epoch = epoch
        if changed:
            self.train_function = None
        return changed

    # --------------------------------------------------------------- inference
    @property
    def item_embeddings(self) -> tf.Tensor:
        """The ``(N+1, d)`` table scores are computed against (a variable for ID
        backbones, a tensor computed from the features for the ``feature`` backbone)."""
        return self.backbone.item_embeddings

    def reason(self, item_ids, steps=None, training=False):
        """``R = [r0 .. rK']`` ``(B, K'+1, d)``; ``steps`` defaults to the trained K."""
        return self.reasoner(item_ids, steps=steps, training=training)

    def user_embedding(self, item_ids, steps=None, training=False):
        """The representation the method scores with: base r0, ERL mean, PRL r_K."""
        return self.objective.aggregate(self.reason(item_ids, steps=steps, training=training))

    def call(self, inputs, training=False):
        item_ids = inputs["item_ids"] if isinstance(inputs, dict) else inputs
        return self.user_embedding(item_ids, training=training)

    def score_items(self, user_embeddings):
        """Full-catalogue scores ``(…, N+1)`` (column 0 = padding, not masked here)."""
        return tf.einsum("...d,nd->...n", user_embeddings, self.item_embeddings)

    # ----------------------------------------------------------------- training
    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        if training and self.optimizer is not None:
            # Dropout masks and PRL noise: a pure function of (seed, step counter); the
            # counter is checkpointed with the optimizer, so resuming is exact.
            seed = tf.stack([tf.constant(self.config.seed, tf.int64),
                             tf.cast(self.optimizer.iterations, tf.int64)])
            if self._micro.index is not None:  # each micro-batch its own dropout masks
                seed = randomness.fold(seed, self._micro.index)
            with randomness.seeded(seed):
                return self._compute_loss(inputs, training)
        return self._compute_loss(inputs, training)

    def train_step(self, inputs):
        """TFRS's train step; with ``config.micro_batches = m > 1`` the batch is cut into
        ``m`` near-equal slices whose gradients, weighted by slice size, are summed before
        one optimizer update (gradient accumulation)."""
        m = int(self.config.micro_batches)
        if m <= 1:
            return super().train_step(inputs)
        variables = self.trainable_variables
        size = tf.shape(tf.nest.flatten(inputs)[0])[0]
        total = [None] * len(variables)
        loss = tf.constant(0.0)
        regularization_loss = tf.constant(0.0)
        for i in range(m):
            start, stop = (i * size) // m, ((i + 1) * size) // m
            # The next slice starts after the previous one's gradients exist, so that
            # one slice's activations are alive at a time (the memory this is for);
            # without the dependency the executor may run every forward pass first.
            with tf.control_dependencies([g for g in total if g is not None]):
                # A batch smaller than m leaves some slices empty: they run on one real
                # row with weight 0 (a mean over no rows is NaN, and NaN * 0 is NaN).
                rows = tf.minimum(tf.range(start, tf.maximum(stop, start + 1)), size - 1)
                part = tf.nest.map_structure(lambda t: tf.gather(t, rows), inputs)
            weight = tf.cast(stop - start, tf.float32) / tf.cast(size, tf.float32)
            self._micro.index, self._micro.weight = i, weight
            try:
                with tf.GradientTape() as tape:
                    part_loss = self.compute_loss(part, training=True)
                    weighted = weight * part_loss
                    if i == 0:  # regularization terms once per update
                        regularization_loss = tf.reduce_sum(
                            [tf.reduce_sum(x) for x in self.losses])
                        weighted += regularization_loss
            finally:
                self._micro.index, self._micro.weight = None, 1.0
            grads = tape.gradient(weighted, variables)
            for j, g in enumerate(grads):
                if g is None:
                    continue
                g = tf.convert_to_tensor(g)  # IndexedSlices of the item table -> dense
                total[j] = g if total[j] is None else total[j] + g
            loss += weight * part_loss
        self.optimizer.apply_gradients(
            (g, v) for g, v in zip(total, variables) if g is not None)
        metrics = {metric.name: metric.result() for metric in self.metrics}
        metrics["loss"] = loss
        metrics["regularization_loss"] = regularization_loss
        metrics["total_loss"] = loss + regularization_loss
        return metrics

    def _compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        item_ids = inputs["item_ids"]
        table = self.item_embeddings
        phase = self.phase
        if "targets" in inputs:  # all-position (SASRec-style) samples
            hidden = self.backbone(item_ids, training=training)
            parts = self.base_objective.all_positions(hidden, inputs["targets"], table)
        elif phase in ("base", "warmup"):
            R = self.reasoner(item_ids, steps=0, training=training)
            objective = self.objective if phase == "base" else self.base_objective
            parts = objective(R, inputs["target"], table)
        elif phase == "contrastive":
            R, R_noisy = self.reasoner(item_ids, training=training, noisy_branch=True,
                                       noise_std=self.config.prl_noise_std,
                                       share_prefix=self.config.prl_share_prefix)
            parts = self.objective(R, inputs["target"], table, R_noisy=R_noisy)
        else:
            R = self.reasoner(item_ids, training=training)
            parts = self.objective(R, inputs["target"], table)
        weight = 1.0 if self._micro.index is None else self._micro.weight
        for tracker in self.part_trackers:
            value = parts.get(tracker.name[len("loss_"):])
            if value is not None:
                tracker.update_state(value, sample_weight=weight)
        return parts["loss"]
