"""Sequence backbones behind the reasoning-loop interface (see ``base.py``)."""
from rearec_tf.backbones.base import SequentialBackbone
from rearec_tf.backbones.sasrec import SASRecBackbone

BACKBONES = {"sasrec": SASRecBackbone}


def build_backbone(config, num_items: int) -> SequentialBackbone:
    """The backbone named by ``config.backbone`` for ``num_items`` real items."""
    try:
        cls = BACKBONES[config.backbone]
    except KeyError:
        raise ValueError(f"unknown backbone {config.backbone!r}; choose one of "
                         f"{sorted(BACKBONES)}") from None
    return cls.from_config_object(config, num_items)


__all__ = ["SequentialBackbone", "SASRecBackbone", "build_backbone", "BACKBONES"]
