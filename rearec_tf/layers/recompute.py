"""Gradient checkpointing for one layer call that uses the project's seeded randomness.

``recompute(fn, x)`` returns ``fn(x)`` but keeps none of ``fn``'s intermediate
activations for the backward pass: ``tf.recompute_grad`` runs ``fn`` again when the
gradient reaches it (after the gradients of everything downstream, which TensorFlow
enforces with a data dependency, also under XLA). Memory for a Transformer layer drops
from every attention/FFN intermediate to the layer's input; the price is one more forward
pass of the layer per training step.

The recomputation happens outside the training step's ``with seeded(...)`` block, so
the seed current at the forward pass is captured and re-entered: every
:class:`~rearec_tf.layers.randomness.SeededDropout` draws the same mask both times and
the gradients are exactly those of the plain call. Without a seed (stateful dropout) the
two passes would draw different masks, so that case is refused during training.
"""
from __future__ import annotations

from typing import Callable

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.layers.randomness import current_seed, seeded


def recompute(fn: Callable, x):
    """``fn(x)`` (a tensor or nested tensors out) with activations recomputed in backprop.
    ``fn`` must be a pure function of ``x``, its variables and the current seed."""
    seed = current_seed()
    if seed is None:
        raise ValueError(
            "recompute_layers needs the seeded training randomness of rearec_tf (train "
            "through ReaRecModel, or wrap the step in rearec_tf.layers.randomness.seeded"
            "(seed)); with stateful dropout the recomputed pass would draw other masks")

    structure = []

    def run(inp):
        with seeded(seed):
            out = fn(inp)
        if not structure:
            structure.append(out)
        return tf.nest.flatten(out)

    flat = tf.recompute_grad(run)(x)
    return tf.nest.pack_sequence_as(structure[0], list(flat))
