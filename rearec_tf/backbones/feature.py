"""Feature-based item backbone (MoRec / UniSRec family): SASRec over adapted item features.

Items are represented by their side features instead of (or on top of) a free ID
embedding. The item table shared by the sequence tokens and the scores is::

    T = m * adapter(F) (+ E_id)          (N+1, d), row 0 = 0 (padding)

- ``F``: either a frozen dense matrix ``(N+1, f)`` (e.g. text or image embeddings), held
  as a *non-trainable* weight so checkpoints and SavedModel exports carry it; or, for
  categorical attributes (S3-Rec ``*_item2attributes.json``), the mean of the item's
  trainable attribute embeddings ``(num_attributes+1, d)``. The attribute lists are
  stored as two non-trainable int vectors of (item, attribute) pairs and pooled with
  ``unsorted_segment_sum``: a padded ``(N+1, A_max)`` gather would materialise
  ``(N+1) * A_max * d`` floats (LastFM has ``A_max = 625``). The pooled embedding is
  the adapter's input, so the attribute path uses the same adapters as dense features.
- ``adapter``: ``linear`` (Dense), ``mlp`` (Dense-GELU-dropout-Dense) or ``moe``
  (UniSRec's mixture of parametric-whitening experts,
  ``sum_e softmax(x W_g)_e * ((drop(x) - b_e) W_e)``, without the noisy gating).
  Its dropout (``adapter_dropout``) is active only on the item-token side in training,
  like the input dropout of SASRec: the score table is always the dropout-free ``T``.
- ``m``: the per-item feature mask (``ItemFeatures.has_features``). Items without
  features get no feature contribution at all (not the adapter's bias), so with
  ``with_id`` their learned ID embedding alone represents them.
- ``E_id`` (``with_id``): SASRec's item table, learned, added to the adapted features.

Everything else — positions, input LayerNorm + dropout, the Transformer, the KV-cached
reasoning steps — is :class:`SASRecBackbone`'s. ``item_embeddings`` is a tensor
computed from the weights on every access (stock TF ops only: exportable, XLA).

``get_config`` holds only shapes (``feature_dim``, ``num_attributes``,
``num_attribute_pairs``), never the feature data: ``from_config`` builds zero weights
that ``set_weights`` or a checkpoint restore fill.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.sasrec import SASRecBackbone
from rearec_tf.layers.activations import gelu
from rearec_tf.layers.attention import normal_init
from rearec_tf.layers.randomness import SeededDropout

ADAPTERS = ("linear", "mlp", "moe")
_FROZEN = ("feature_matrix", "feature_mask", "attribute_item_index", "attribute_index")
"""Names of the non-trainable data weights (what a checkpoint carries of the features)."""


class _ArrayInit(tf.keras.initializers.Initializer):
    """Initial value from a numpy array (a checkpoint restore-on-create still wins)."""

    def __init__(self, value: np.ndarray):
        self.value = value

    def __call__(self, shape, dtype=None, **kwargs):
        if tuple(shape) != self.value.shape:
            raise ValueError(f"initial value shape {self.value.shape} != weight shape "
                             f"{tuple(shape)}")
        return tf.constant(self.value, dtype=dtype)


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class FeatureBackbone(SASRecBackbone):
    """SASRec whose item table is ``adapter(features) (+ ID embedding)``; module docstring.

    Args (besides :class:`SASRecBackbone`'s):
      feature_dim: width ``f`` of frozen dense features (0 with attributes).
      num_attributes: distinct attributes (0 with dense features).
      num_attribute_pairs: number of (item, attribute) pairs (attributes only).
      adapter: ``linear``, ``mlp`` or ``moe``.
      num_experts: experts of the ``moe`` adapter.
      with_id: add a learned ID embedding to the adapted features.
      adapter_dropout: dropout rate inside the adapter (item tokens, training only).
      item_features: :class:`rearec_tf.data.item_features.ItemFeatures` giving the initial
        values of the data weights (None: zeros, to be filled by a restore).
    """

    def __init__(self, num_items: int, feature_dim: int = 0, num_attributes: int = 0,
                 num_attribute_pairs: int = 0, adapter: str = "mlp", num_experts: int = 8,
                 with_id: bool = True, adapter_dropout: float = 0.2, item_features=None,
                 **kwargs):
        super().__init__(num_items, **kwargs)
        if adapter not in ADAPTERS:
            raise ValueError(f"adapter={adapter!r}; choose one of {ADAPTERS}")
        if (feature_dim > 0) == (num_attributes > 0):
            raise ValueError("FeatureBackbone needs exactly one of feature_dim > 0 (dense "
                             f"features) and num_attributes > 0, got feature_dim={feature_dim}, "
                             f"num_attributes={num_attributes}")
        if adapter == "moe" and num_experts < 1:
            raise ValueError(f"num_experts={num_experts} must be >= 1")
        self.feature_dim = int(feature_dim)
        self.num_attributes = int(num_attributes)
        self.num_attribute_pairs = int(num_attribute_pairs)
        self.adapter = adapter
        self.num_experts = int(num_experts)
        self.with_id = bool(with_id)
        self.adapter_dropout = float(adapter_dropout)
        if item_features is not None:
            self._check_features(item_features)
        self._initial_features = item_features  # dropped once the weights exist
        self._token_training = None  # the `training` of the encode call in progress
        d, std = self.hidden_size, self.initializer_range
        self.adapter_drop = SeededDropout(adapter_dropout, salt=5, name="adapter_dropout")
        if adapter == "mlp":
            self.adapter_hidden = tf.keras.layers.Dense(d, kernel_initializer=normal_init(std),
                                                        name="adapter_hidden")
        if adapter in ("linear", "mlp"):
            self.adapter_out = tf.keras.layers.Dense(d, kernel_initializer=normal_init(std),
                                                     name="adapter_out")

    def _check_features(self, features) -> None:
        want = (self.num_items, self.feature_dim, self.num_attributes)
        got = (features.num_items, features.feature_dim, features.num_attributes)
        if want != got:
            raise ValueError(f"item_features (num_items, feature_dim, num_attributes) = {got} "
                             f"do not match the backbone's {want}")
        if features.attributes is not None:
            pairs = int(np.count_nonzero(features.attributes))
            if pairs != self.num_attribute_pairs:
                raise ValueError(f"item_features have {pairs} attribute pairs, the backbone "
                                 f"{self.num_attribute_pairs}")

    # ------------------------------------------------------------------ weights
    @property
    def adapter_input_dim(self) -> int:
        """Width of the adapter input: ``f`` (dense) or ``d`` (pooled attributes)."""
        return self.feature_dim or self.hidden_size

    def build(self, input_shape=None):
        n1, d = self.num_items + 1, self.hidden_size
        feats = self._initial_features

        def data(name, shape, dtype, value):
            init = "zeros" if value is None else _ArrayInit(np.asarray(value))
            return self.add_weight(name=name, shape=shape, dtype=dtype, trainable=False,
                                   initializer=init)

        if self.feature_dim:
            self.feature_matrix = data("feature_matrix", (n1, self.feature_dim), tf.float32,
                                       None if feats is None else feats.dense)
        else:
            rows, attrs = feats.attribute_pairs() if feats is not None else (None, None)
            self.attribute_embedding = self.add_weight(
                name="attribute_embedding", shape=(self.num_attributes + 1, d),
                initializer=normal_init(self.initializer_range))
            p = (self.num_attribute_pairs,)
            self.attribute_item_index = data("attribute_item_index", p, tf.int32, rows)
            self.attribute_index = data("attribute_index", p, tf.int32, attrs)
        self.feature_mask = data("feature_mask", (n1,), tf.float32,
                                 None if feats is None else feats.has_features.astype(np.float32))
        x_dim = self.adapter_input_dim
        if self.adapter == "moe":
            e = self.num_experts
            self.moe_gate = self.add_weight(name="moe_gate", shape=(x_dim, e),
                                            initializer="zeros")
            self.moe_kernel = self.add_weight(name="moe_kernel", shape=(e, x_dim, d),
                                              initializer=normal_init(self.initializer_range))
            self.moe_bias = self.add_weight(name="moe_bias", shape=(e, x_dim),
                                            initializer="zeros")
        else:
            out_in = x_dim
            if self.adapter == "mlp":
                self.adapter_hidden.build(tf.TensorShape([None, x_dim]))
                out_in = d
            self.adapter_out.build(tf.TensorShape([None, out_in]))
        if self.with_id:
            super().build(input_shape)  # item_embedding (= E_id), positions, Transformer
        else:  # SASRec's build without the ID table
            self.position_embedding = self.add_weight(
                name="position_embedding", shape=(self.max_len, d),
                initializer=normal_init(self.initializer_range))
            shape = tf.TensorShape([None, None, d])
            self.input_norm.build(shape)
            for layer in self.encoder_layers:
                layer.build(shape)
            super(SASRecBackbone, self).build(input_shape)
        self._initial_features = None

    # ------------------------------------------------------------- item table
    def feature_inputs(self) -> tf.Tensor:
        """The adapter input ``(N+1, f)``: frozen features or mean-pooled attributes."""
        if self.feature_dim:
            return tf.convert_to_tensor(self.feature_matrix)
        n1 = self.num_items + 1
        rows = tf.convert_to_tensor(self.attribute_item_index)
        emb = tf.gather(self.attribute_embedding, self.attribute_index)  # (P, d)
        sums = tf.math.unsorted_segment_sum(emb, rows, n1)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(rows, emb.dtype), rows, n1)
        return sums / tf.maximum(counts, 1.0)[:, None]

    def adapt(self, x: tf.Tensor, training=None) -> tf.Tensor:
        """The adapter: ``(M, f) -> (M, d)``."""
        if self.adapter == "linear":
            return self.adapter_out(self.adapter_drop(x, training=training))
        if self.adapter == "mlp":
            h = gelu(self.adapter_hidden(x), training=training)
            return self.adapter_out(self.adapter_drop(h, training=training))
        # moe: sum_e g_e (x - b_e) W_e = sum_e g_e (x W_e - b_e W_e)
        gate = tf.nn.softmax(tf.matmul(x, self.moe_gate), axis=-1)  # (M, E)
        xd = self.adapter_drop(x, training=training)
        experts = tf.einsum("mf,efd->med", xd, self.moe_kernel)
        experts -= tf.einsum("ef,efd->ed", self.moe_bias, self.moe_kernel)[None]
        return tf.einsum("me,med->md", gate, experts)

    def item_table(self, training=None) -> tf.Tensor:
        """``T = mask * adapter(F) (+ E_id)`` ``(N+1, d)``, row 0 = 0."""
        if not self.built:
            self.build(None)
        table = self.adapt(self.feature_inputs(), training=training)
        table *= self.feature_mask[:, None]  # row 0 and featureless items: no features
        if self.with_id:
            ids = tf.convert_to_tensor(self.item_embedding)
            table += tf.concat([tf.zeros_like(ids[:1]), ids[1:]], axis=0)
        return table

    @property
    def item_embeddings(self) -> tf.Tensor:
        """The score table: :meth:`item_table` in inference mode (a computed tensor)."""
        return self.item_table(training=False)

    # ---------------------------------------------------------------- step 0
    def embed(self, item_ids):
        """Rows of :meth:`item_table` + position embeddings ``(B, L, d)``, valid mask."""
        item_ids = tf.convert_to_tensor(item_ids)
        valid = tf.not_equal(item_ids, 0)
        positions = tf.maximum(tf.cumsum(tf.cast(valid, tf.int32), axis=1) - 1, 0)
        table = self.item_table(training=self._token_training)
        x = tf.gather(table, item_ids) + tf.gather(self.position_embedding, positions)
        return x, valid

    def encode(self, item_ids, extra_slots: int = 0, training=None, last_only: bool = False):
        self._token_training = training  # read by embed (SASRec's embed takes no flag)
        try:
            return super().encode(item_ids, extra_slots=extra_slots, training=training,
                                  last_only=last_only)
        finally:
            self._token_training = None

    def encode_extended(self, item_ids, reasoning_tokens, training=None):
        self._token_training = training
        try:
            return super().encode_extended(item_ids, reasoning_tokens, training=training)
        finally:
            self._token_training = None

    # ----------------------------------------------------------------- config
    def get_config(self):
        cfg = super().get_config()
        cfg.update(feature_dim=self.feature_dim, num_attributes=self.num_attributes,
                   num_attribute_pairs=self.num_attribute_pairs, adapter=self.adapter,
                   num_experts=self.num_experts, with_id=self.with_id,
                   adapter_dropout=self.adapter_dropout)
        return cfg

    @classmethod
    def from_config_object(cls, config, num_items: int, item_features=None,
                           name: Optional[str] = "feature"):
        """Build from a :class:`rearec_tf.config.Config` and the vocabulary-aligned
        :class:`~rearec_tf.data.item_features.ItemFeatures` (required)."""
        if item_features is None:
            raise ValueError(
                "backbone='feature' needs item_features (an ItemFeatures aligned with the "
                "vocabulary): load them with rearec_tf.data.item_features.load_item_features"
                "(config, vocab) and pass ReaRecModel(..., item_features=...)")
        if item_features.num_items != num_items:
            raise ValueError(f"item_features cover {item_features.num_items} items, the model "
                             f"has {num_items}: they were aligned to another vocabulary")
        pairs = (int(np.count_nonzero(item_features.attributes))
                 if item_features.attributes is not None else 0)
        return cls(num_items=num_items, feature_dim=item_features.feature_dim,
                   num_attributes=item_features.num_attributes, num_attribute_pairs=pairs,
                   adapter=config.feature_adapter, num_experts=config.feature_experts,
                   with_id=config.feature_with_id, adapter_dropout=config.input_dropout,
                   item_features=item_features, max_len=config.max_len,
                   hidden_size=config.hidden_size, num_layers=config.num_layers,
                   num_heads=config.num_heads, ffn_size=config.ffn_size,
                   hidden_dropout=config.hidden_dropout,
                   attention_dropout=config.attention_dropout,
                   input_dropout=config.input_dropout, layer_norm_eps=config.layer_norm_eps,
                   initializer_range=config.initializer_range, qkv_init=config.qkv_init,
                   name=name)


def item_features_from_checkpoint(path: str, num_items: int):
    """The :class:`~rearec_tf.data.item_features.ItemFeatures` a ``FeatureBackbone``
    checkpoint holds (its non-trainable data weights), so a trained run can be rebuilt
    without the original feature file. ``path``: checkpoint prefix."""
    from rearec_tf.data.item_features import ItemFeatures

    reader = tf.train.load_checkpoint(path)
    found = {}
    for key in reader.get_variable_to_shape_map():
        parts = key.split("/")
        if len(parts) >= 3 and parts[-2:] == [".ATTRIBUTES", "VARIABLE_VALUE"] and (
                parts[-3] in _FROZEN + ("attribute_embedding",)) and "optimizer" not in parts:
            found.setdefault(parts[-3], key)
    source = f"checkpoint:{path}"
    if "feature_mask" not in found:
        raise ValueError(f"checkpoint {path!r} holds no FeatureBackbone weights "
                         "(feature_mask missing): was the run trained with backbone='feature'?")
    mask = reader.get_tensor(found["feature_mask"]) > 0
    if mask.shape != (num_items + 1,):
        raise ValueError(f"checkpoint {path!r}: feature_mask has shape {mask.shape}, the "
                         f"vocabulary {num_items} items")
    if "feature_matrix" in found:
        return ItemFeatures(dense=reader.get_tensor(found["feature_matrix"]), attributes=None,
                            num_attributes=0, has_features=mask, source=source)
    num_attributes = reader.get_variable_to_shape_map()[found["attribute_embedding"]][0] - 1
    return ItemFeatures.from_attribute_pairs(
        num_items, reader.get_tensor(found["attribute_item_index"]),
        reader.get_tensor(found["attribute_index"]), num_attributes, source)


__all__ = ["FeatureBackbone", "item_features_from_checkpoint", "ADAPTERS"]
