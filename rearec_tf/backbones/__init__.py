"""Sequence backbones behind the reasoning-loop interface (see ``base.py``).

One file per backbone; ``build_backbone`` picks one by ``Config.backbone``:

- ``sasrec``   — :class:`SASRecBackbone`, causal Transformer (SPEC §2);
- ``sasrec_preln`` — the same in the SASRec reference code's pre-LN layout (√d item
  embeddings, pre-LN blocks with a ReLU FFN, final LayerNorm);
- ``bert4rec`` — :class:`BERT4RecBackbone`, bidirectional among items, causal for
  reasoning tokens (prefix masking);
- ``gru4rec``  — :class:`GRU4RecBackbone`, recurrent, the hidden state is the cache;
- ``feature``  — :class:`FeatureBackbone`, items represented by (frozen) features through
  an adapter (MoRec/UniSRec family).
"""
import importlib

from rearec_tf.backbones.base import SequentialBackbone
from rearec_tf.backbones.sasrec import SASRecBackbone

BACKBONES = {
    "sasrec": "rearec_tf.backbones.sasrec:SASRecBackbone",
    "sasrec_preln": "rearec_tf.backbones.sasrec_preln:PreLNSASRecBackbone",
    "bert4rec": "rearec_tf.backbones.bert4rec:BERT4RecBackbone",
    "gru4rec": "rearec_tf.backbones.gru4rec:GRU4RecBackbone",
    "feature": "rearec_tf.backbones.feature:FeatureBackbone",
}


def backbone_class(name: str):
    """The class registered under ``name``."""
    try:
        module, cls = BACKBONES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None
    return getattr(importlib.import_module(module), cls)


def build_backbone(config, num_items: int, item_features=None) -> SequentialBackbone:
    """The backbone named by ``config.backbone`` for ``num_items`` real items.

    ``item_features``: a :class:`rearec_tf.data.item_features.ItemFeatures` aligned with
    the vocabulary; required by the ``feature`` backbone, ignored by the others.
    """
    cls = backbone_class(config.backbone)
    if config.backbone == "feature":
        return cls.from_config_object(config, num_items, item_features=item_features)
    return cls.from_config_object(config, num_items)


def __getattr__(name):  # lazy access: rearec_tf.backbones.GRU4RecBackbone etc.
    for key, target in BACKBONES.items():
        if target.endswith(":" + name):
            return backbone_class(key)
    raise AttributeError(name)


__all__ = ["SequentialBackbone", "SASRecBackbone", "build_backbone", "backbone_class",
           "BACKBONES"]
