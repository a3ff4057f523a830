"""The interface between a sequence backbone and the reasoning loop.

A backbone (keras-hub sense: the network, without the objective that trains it or
the preprocessor that feeds it) exposes three things to
:class:`rearec_tf.reasoning.ReasoningLoop`:

``encode(item_ids, extra_slots, training, last_only) -> (hidden, cache)``
    Step 0. ``item_ids`` is ``(B, L)`` int, left-padded with 0 (newest item last).
    ``hidden`` is the final-layer output ``(B, L, d)`` (``(B, 1, d)``, the last
    position only, when ``last_only``); ``cache`` is any nested structure of tensors
    (``tf.nest``-compatible, batch first) with room for ``extra_slots`` more tokens —
    attention backbones preallocate key/value slots, a recurrent one keeps its state,
    whose shape does not depend on ``extra_slots``.
``step(token, cache, step, training) -> (output, cache)``
    Reasoning step ``step`` (0-based): ``token`` ``(B, d)`` is the fed-back state plus
    the reasoning position embedding, before the backbone's input transform (the same
    one item embeddings get, e.g. SASRec's input LayerNorm + dropout). Returns the
    final-layer output ``(B, d)`` and the updated cache. Shapes of the cache never
    change (loop-invariant).
``item_embeddings``
    The ``(num_items + 1, d)`` table scores are computed against (row 0 = padding).
``encode_extended(item_ids, reasoning_tokens, training) -> hidden`` (optional)
    The reference path without a cache: the outputs ``(B, L + k, d)`` of the items
    followed by ``k`` reasoning tokens, recomputed from scratch.
    :meth:`ReasoningLoop.recompute` and the equivalence tests use it.

Any backbone honouring these three plugs into the loop and the objectives unchanged.
"""
from __future__ import annotations

import rearec_tf._env  # noqa: F401
import tensorflow as tf


class SequentialBackbone(tf.keras.layers.Layer):
    """Base class documenting the backbone interface; see the module docstring."""

    hidden_size: int
    max_len: int

    def encode(self, item_ids, extra_slots: int = 0, training=None,
               last_only: bool = False):  # pragma: no cover
        raise NotImplementedError

    def step(self, token, cache, step, training=None):  # pragma: no cover
        raise NotImplementedError

    @property
    def item_embeddings(self) -> tf.Variable:  # pragma: no cover
        raise NotImplementedError

    def encode_extended(self, item_ids, reasoning_tokens, training=None):  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no recomputation reference path")

    def call(self, item_ids, training=None):
        """Final-layer output of every position, ``(B, L, d)``."""
        hidden, _ = self.encode(item_ids, extra_slots=0, training=training)
        return hidden
