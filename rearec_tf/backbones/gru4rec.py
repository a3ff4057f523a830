"""GRU4Rec backbone (RecBole layout) behind the reasoning-loop interface.

- Item table ``E`` of ``num_items + 1`` rows (row 0 = padding), N(0, initializer_range);
  scores are dot products with the tied ``E``. No position table: order is carried by
  the recurrence.
- Input transform: input dropout on the item embeddings, and on every reasoning token
  (``r_{k-1} + P[k-1]`` goes through exactly the same transform). No LayerNorm, as in
  GRU4Rec.
- ``num_layers`` stacked :class:`tf.keras.layers.GRUCell` (``reset_after=True``, the
  PyTorch/cuDNN formulation; Keras default initializers: Glorot kernels, orthogonal
  recurrent kernels, zero biases), hidden size ``d``. ``hidden_dropout`` is applied to
  the output of every layer but the last (PyTorch ``nn.GRU(dropout=...)`` semantics).
- Output projection ``out_proj`` (Dense ``d -> d``) on the last layer's state, like
  RecBole's ``dense`` layer: the representation scored against ``E``.

Sequences are left-padded with 0, newest item last. Every layer starts from a zero state
and a padded time step leaves the state unchanged, so the state is still zero when the
first real item arrives: results do not depend on how much padding precedes the items
(length buckets may trim padding columns freely). ``r0`` is ``hidden[:, -1]``.

The recurrent cache is simply the per-layer final state, a tuple of ``num_layers``
``(B, d)`` tensors: fixed shape whatever ``extra_slots`` is, so it is loop-invariant in
the reasoning ``tf.while_loop``. A reasoning step is one cell step per layer from the
cached states.

Over a whole sequence the input-to-gate projections of all time steps are computed as
one matmul before the time loop (``tf.scan``), which then only does the recurrent part;
:meth:`step` calls the Keras cell itself. Both compute the same function (tested).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.base import SequentialBackbone
from rearec_tf.layers.attention import dense_2d, normal_init
from rearec_tf.layers.randomness import SeededDropout


def _split_bias(cell: tf.keras.layers.GRUCell):
    """``(input_bias, recurrent_bias)`` of a ``reset_after`` cell (``None`` without bias)."""
    if not cell.use_bias:
        return None, None
    return cell.bias[0], cell.bias[1]


def _input_gates(cell: tf.keras.layers.GRUCell, x: tf.Tensor) -> tf.Tensor:
    """``x W + b_in`` for ``x`` ``(..., d_in)`` -> ``(..., 3 units)``, as one 2-D matmul."""
    shape = tf.shape(x)
    gates = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), cell.kernel)
    input_bias, _ = _split_bias(cell)
    if input_bias is not None:
        gates = gates + input_bias
    return tf.reshape(gates, tf.concat([shape[:-1], [3 * cell.units]], axis=0))


def _recurrent_update(cell: tf.keras.layers.GRUCell, gates: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
    """The new state from precomputed input gates ``(B, 3 units)`` and the state ``h``;
    exactly :meth:`GRUCell.call` with ``reset_after=True`` and no cell dropout."""
    x_z, x_r, x_h = tf.split(gates, 3, axis=-1)
    inner = tf.matmul(h, cell.recurrent_kernel)
    _, recurrent_bias = _split_bias(cell)
    if recurrent_bias is not None:
        inner = inner + recurrent_bias
    h_z, h_r, h_h = tf.split(inner, 3, axis=-1)
    z = cell.recurrent_activation(x_z + h_z)
    r = cell.recurrent_activation(x_r + h_r)
    candidate = cell.activation(x_h + r * h_h)
    return z * h + (1 - z) * candidate


def run_gru_layer(cell: tf.keras.layers.GRUCell, x: tf.Tensor, valid: tf.Tensor,
                  state: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Run ``cell`` over ``x`` ``(B, T, d_in)``; returns the states ``(B, T, units)``.

    Where ``valid`` ``(B, T)`` is False (padding) the state is carried over unchanged.
    ``state`` is the initial state, zeros by default.
    """
    if state is None:
        state = tf.zeros([tf.shape(x)[0], cell.units], x.dtype)
    gates = tf.transpose(_input_gates(cell, x), [1, 0, 2])      # (T, B, 3 units)
    keep = tf.transpose(valid)[:, :, None]                       # (T, B, 1)

    def one_step(h, elems):
        g, v = elems
        return tf.where(v, _recurrent_update(cell, g, h), h)

    states = tf.scan(one_step, (gates, keep), initializer=state)
    return tf.transpose(states, [1, 0, 2])


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class GRU4RecBackbone(SequentialBackbone):
    """Stacked-GRU sequence encoder; see the module docstring.

    Args:
      num_items: real items (the table has ``num_items + 1`` rows).
      max_len: longest sequence the data pipeline feeds (the GRU itself has no limit).
      hidden_size: ``d``, the width of embeddings, states and outputs.
      num_layers: stacked GRU cells.
      hidden_dropout: dropout between GRU layers (unused with one layer).
      input_dropout: dropout on item embeddings and reasoning tokens.
      initializer_range: std of the N(0, std) item table.
    """

    def __init__(self, num_items: int, max_len: int = 50, hidden_size: int = 64,
                 num_layers: int = 1, hidden_dropout: float = 0.0,
                 input_dropout: float = 0.2, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"num_layers={num_layers} must be at least 1")
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.hidden_dropout = hidden_dropout
        self.input_dropout = input_dropout
        self.initializer_range = initializer_range
        self.input_drop = SeededDropout(input_dropout, salt=1)
        self.gru_cells = [tf.keras.layers.GRUCell(hidden_size, reset_after=True, name=f"gru_{i}")
                          for i in range(num_layers)]
        # dropout after layer i feeds layer i + 1; distinct salts per layer
        self.layer_drops = [SeededDropout(hidden_dropout, salt=10 * (i + 1))
                            for i in range(num_layers - 1)]
        self.out_proj = tf.keras.layers.Dense(hidden_size, name="out_proj")

    def build(self, input_shape=None):
        self.item_embedding = self.add_weight(
            name="item_embedding", shape=(self.num_items + 1, self.hidden_size),
            initializer=normal_init(self.initializer_range))
        shape = tf.TensorShape([None, self.hidden_size])
        for cell in self.gru_cells:
            cell.build(shape)
        self.out_proj.build(shape)
        super().build(input_shape)

    @property
    def item_embeddings(self) -> tf.Variable:
        return self.item_embedding

    # ----------------------------------------------------------------- helpers
    def _inputs(self, x, training):
        """The input transform shared by item embeddings and reasoning tokens."""
        return self.input_drop(x, training=training)

    def _run(self, x, valid, training) -> Tuple[tf.Tensor, Tuple[tf.Tensor, ...]]:
        """All layers over ``x`` ``(B, T, d)`` (already transformed): the last layer's
        states ``(B, T, d)`` and every layer's final state."""
        finals: List[tf.Tensor] = []
        h = x
        for i, cell in enumerate(self.gru_cells):
            if i:
                h = self.layer_drops[i - 1](h, training=training)
            h = run_gru_layer(cell, h, valid)
            finals.append(h[:, -1])
        return h, tuple(finals)

    # ----------------------------------------------------------------- step 0
    def encode(self, item_ids, extra_slots: int = 0, training=None, last_only: bool = False):
        """Step 0. ``extra_slots`` is ignored (the recurrent cache has a fixed shape);
        ``last_only`` projects only the last position (``hidden`` ``(B, 1, d)``)."""
        if not self.built:
            self.build(None)
        item_ids = tf.convert_to_tensor(item_ids)
        x = self._inputs(tf.gather(self.item_embedding, item_ids), training)
        top, cache = self._run(x, tf.not_equal(item_ids, 0), training)
        if last_only:
            return self.out_proj(top[:, -1])[:, None], cache
        return dense_2d(self.out_proj, top), cache

    # -------------------------------------------------------- reasoning steps
    def step(self, token, cache, step, training=None):
        """One cell step per layer from the cached states; ``step`` is not needed (the
        recurrence carries the order) but kept for the interface."""
        h = self._inputs(token, training)
        states = []
        for i, (cell, state) in enumerate(zip(self.gru_cells, cache)):
            if i:
                h = self.layer_drops[i - 1](h, training=training)
            h, _ = cell(h, [state], training=training)
            states.append(h)
        return self.out_proj(h), tuple(states)

    def encode_extended(self, item_ids, reasoning_tokens, training=None):
        """Recompute ``[items, t_1, ..., t_k]`` from scratch (no cache), for tests.

        ``reasoning_tokens`` ``(B, k, d)`` are untransformed reasoning inputs (k may be
        0); returns the projected outputs ``(B, L + k, d)``.
        """
        if not self.built:
            self.build(None)
        item_ids = tf.convert_to_tensor(item_ids)
        reasoning_tokens = tf.convert_to_tensor(reasoning_tokens, self.item_embedding.dtype)
        x = tf.concat([tf.gather(self.item_embedding, item_ids), reasoning_tokens], axis=1)
        k = tf.shape(reasoning_tokens)[1]
        valid = tf.concat([tf.not_equal(item_ids, 0),
                           tf.ones([tf.shape(item_ids)[0], k], tf.bool)], axis=1)
        top, _ = self._run(self._inputs(x, training), valid, training)
        return dense_2d(self.out_proj, top)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_items=self.num_items, max_len=self.max_len, hidden_size=self.hidden_size,
                   num_layers=self.num_layers, hidden_dropout=self.hidden_dropout,
                   input_dropout=self.input_dropout, initializer_range=self.initializer_range)
        return cfg

    @classmethod
    def from_config_object(cls, config, num_items: int, name: Optional[str] = "gru4rec"):
        """Build from a :class:`rearec_tf.config.Config` (the attention fields are unused)."""
        return cls(num_items=num_items, max_len=config.max_len, hidden_size=config.hidden_size,
                   num_layers=config.num_layers, hidden_dropout=config.hidden_dropout,
                   input_dropout=config.input_dropout,
                   initializer_range=config.initializer_range, name=name)
