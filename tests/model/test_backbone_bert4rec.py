"""BERT4Rec with prefix masking: bidirectional among items, causal for reasoning tokens.
The loop contract (prefix masking included) is in test_backbone_contract.py."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401

from rearec_tf.backbones import build_backbone
from rearec_tf.backbones.bert4rec import BERT4RecBackbone
from rearec_tf.config import Config

from _backbones import D, batch, make


def test_item_tokens_see_later_items():
    bb, _ = make("bert4rec")
    ids = batch()
    base = bb(ids).numpy()
    # bidirectional among items: changing the newest item changes the oldest real item's output
    changed = ids.copy()
    changed[:, -1] = np.where(changed[:, -1] == 5, 6, 5)
    first = np.argmax(ids > 0, axis=1)
    rows = np.arange(len(ids))
    moved = np.abs(bb(changed).numpy()[rows, first] - base[rows, first]).max(axis=-1)
    assert np.all(moved[[1, 2, 3, 4]] > 1e-4)  # users with >1 item


def test_differs_from_sasrec_with_the_same_weights():
    bert, _ = make("bert4rec")
    sas, _ = make("sasrec")
    sas.set_weights(bert.get_weights())
    ids = batch()
    a, b = bert(ids).numpy(), sas(ids).numpy()
    # user 2 has 7 items: every position but the newest sees different keys
    assert np.abs(a[2, :-1] - b[2, :-1]).max() > 1e-3


def test_registry_builds_it():
    built = build_backbone(Config(backbone="bert4rec", hidden_size=D, num_heads=2), 30)
    assert isinstance(built, BERT4RecBackbone) and built.bidirectional_items


def test_all_position_samples_are_refused():
    with pytest.raises(ValueError, match="bert4rec.*prefix"):
        Config(backbone="bert4rec", sample_mode="all")
