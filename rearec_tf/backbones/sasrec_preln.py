"""Pre-LN SASRec: the layout of SASRec's reference code, as most later SASRec results
(e.g. the ML-1M SASRec-CE anchor of Klenitskiy & Vasilev, RecSys'23) were obtained with.

Differences from :mod:`rearec_tf.backbones.sasrec` (the ReaRec release's post-LN block,
SPEC §2, which stays the default and the only one the reference tests pin):

- item embeddings scaled by ``√d`` before the position embedding is added; no input
  LayerNorm (tokens only go through the input dropout);
- pre-LN blocks (:class:`rearec_tf.layers.transformer.PreLNTransformerLayer`): queries
  from ``LayerNorm(h)``, keys/values from ``h``, residuals from the normalised input,
  ReLU FFN with dropout;
- a final LayerNorm on the last layer's output, so the state scored against the item
  table (and fed back as the next reasoning token) is normalised.

Padding stays masked out as keys, and the reasoning loop, KV cache and objectives are
unchanged: a reasoning token ``r + P[k]`` goes through the input dropout like an item.
"""
from __future__ import annotations

from typing import Optional

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.sasrec import SASRecBackbone
from rearec_tf.layers.transformer import PreLNTransformerLayer


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class PreLNSASRecBackbone(SASRecBackbone):
    layer_class = PreLNTransformerLayer
    input_layer_norm = False
    scale_item_embeddings = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.final_norm = tf.keras.layers.LayerNormalization(epsilon=self.layer_norm_eps,
                                                             name="final_norm")

    def build(self, input_shape=None):
        self.final_norm.build(tf.TensorShape([None, None, self.hidden_size]))
        super().build(input_shape)

    def output_transform(self, h):
        return self.final_norm(h)

    @classmethod
    def from_config_object(cls, config, num_items: int, name: Optional[str] = "sasrec_preln"):
        return super().from_config_object(config, num_items, name=name)
