"""BERT4Rec backbone with the paper's prefix masking (ReaRec §4, "BERT4Rec" rows).

The same Transformer as :class:`SASRecBackbone` (post-LN, GELU, tied item table), but
item tokens attend *bidirectionally* to every real item of the sequence, while
reasoning tokens attend causally (to all items and the reasoning tokens before them).
Item tokens never attend to reasoning tokens, so the step-0 keys/values stay valid and
the reasoning loop's KV cache is exact.

Trained like the paper uses it: next-item cross-entropy on the last item token's output
with one sample per target (``sample_mode='prefix'``) — no Cloze masking. All-position
samples are refused by the config: a bidirectional token would see its own target.
"""
from __future__ import annotations

from typing import Optional

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.sasrec import SASRecBackbone


@tf.keras.utils.register_keras_serializable(package="rearec_tf")
class BERT4RecBackbone(SASRecBackbone):
    bidirectional_items = True

    @classmethod
    def from_config_object(cls, config, num_items: int, name: Optional[str] = "bert4rec"):
        return super().from_config_object(config, num_items, name=name)
