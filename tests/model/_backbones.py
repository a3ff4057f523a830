"""Tiny instances of every backbone behind one ReasoningLoop, for the contract tests and
the per-backbone ones, plus the generated item features the feature backbone needs."""
import numpy as np

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones import backbone_class
from rearec_tf.config import Config
from rearec_tf.data.item_features import ItemFeatures
from rearec_tf.reasoning.loop import ReasoningLoop

from _sequences import left_padded_batch

NAMES = ("sasrec", "sasrec_preln", "bert4rec", "gru4rec", "feature")
N, L, D, F = 30, 7, 16, 12  # items, max_len, hidden size, dense feature width
MISSING = (5, 17)  # items without features


def dense_features(seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(N + 1, F)).astype(np.float32)
    has = np.ones(N + 1, bool)
    has[[0, *MISSING]] = False
    dense[~has] = 0
    return ItemFeatures(dense=dense, attributes=None, num_attributes=0, has_features=has,
                        source="test")


def attribute_features(seed=0):
    rng = np.random.default_rng(seed)
    matrix = np.zeros((N + 1, 4), np.int32)
    for i in range(1, N + 1):
        if i in MISSING:
            continue
        k = int(rng.integers(1, 5))
        matrix[i, :k] = rng.choice(np.arange(1, 9), size=k, replace=False)
    # attribute 9 exists (has an embedding) but no item has it yet
    return ItemFeatures(dense=None, attributes=matrix, num_attributes=9,
                        has_features=(matrix > 0).any(1), source="test")


def make(name, seed=0, steps=2, max_steps=5, init=0.3, dropout=0.0, num_layers=2,
         features="dense", adapter="mlp", with_id=True):
    """``(backbone, loop)``: backbone ``name`` with ``N`` items, ``max_len`` ``L``, width
    ``D``, N(0, ``init``) weights, ``dropout`` everywhere, under a built ReasoningLoop
    (default K = ``steps``, ``max_steps`` rows). ``features``/``adapter``/``with_id``: the feature
    backbone's item features (``dense`` or ``attributes``) and adapter."""
    tf.keras.utils.set_random_seed(seed)
    if name == "gru4rec":
        bb = backbone_class(name)(num_items=N, max_len=L, hidden_size=D,
                                  num_layers=num_layers, hidden_dropout=dropout,
                                  input_dropout=dropout, initializer_range=init)
    else:
        cfg = Config(backbone=name, item_features="x", feature_adapter=adapter,
                     feature_experts=3, feature_with_id=with_id, max_len=L, hidden_size=D,
                     num_layers=num_layers, num_heads=2, ffn_size=24, hidden_dropout=dropout,
                     attention_dropout=dropout, input_dropout=dropout, initializer_range=init)
        if name == "feature":
            feats = dense_features() if features == "dense" else attribute_features()
            bb = backbone_class(name).from_config_object(cfg, N, item_features=feats)
        else:
            bb = backbone_class(name).from_config_object(cfg, N)
    loop = ReasoningLoop(bb, steps=steps, max_steps=max_steps, initializer_range=init)
    loop.build(None)
    return bb, loop


def batch():
    """Five left-padded sequences of lengths 1, 3, 7, 5, 2 (width ``L``), the featureless
    items among them."""
    ids = left_padded_batch(num_items=N, width=L)
    ids[2, 3], ids[3, -1] = MISSING
    return ids
