"""BERT4Rec with prefix masking: bidirectional among items, causal for reasoning tokens."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones import build_backbone
from rearec_tf.backbones.bert4rec import BERT4RecBackbone
from rearec_tf.backbones.sasrec import SASRecBackbone
from rearec_tf.config import Config
from rearec_tf.reasoning.loop import ReasoningLoop

from _sequences import assert_cached_equals_recompute, left_padded_batch

L, D = 7, 16


def make(cls=BERT4RecBackbone, seed=0):
    tf.keras.utils.set_random_seed(seed)
    bb = cls(num_items=30, max_len=L, hidden_size=D, num_layers=2, num_heads=2, ffn_size=24,
             hidden_dropout=0.0, attention_dropout=0.0, input_dropout=0.0, initializer_range=0.3)
    loop = ReasoningLoop(bb, steps=2, max_steps=5, initializer_range=0.3)
    loop.build(None)
    return bb, loop


def batch():
    return left_padded_batch(width=L)


@pytest.mark.parametrize("steps", [0, 1, 2, 4])
def test_cached_loop_equals_full_recomputation(steps):
    _, loop = make()
    ids = batch()
    assert_cached_equals_recompute(loop, ids, steps)


def test_zero_steps_is_the_plain_backbone():
    bb, loop = make()
    ids = batch()
    np.testing.assert_allclose(loop(ids, steps=0).numpy()[:, 0], bb(ids).numpy()[:, -1], atol=1e-6)


def test_item_tokens_see_later_items_but_never_reasoning_tokens():
    bb, _ = make()
    ids = batch()
    base = bb(ids).numpy()
    # bidirectional among items: changing the newest item changes the oldest real item's output
    changed = ids.copy()
    changed[:, -1] = np.where(changed[:, -1] == 5, 6, 5)
    first = np.argmax(ids > 0, axis=1)
    rows = np.arange(len(ids))
    moved = np.abs(bb(changed).numpy()[rows, first] - base[rows, first]).max(axis=-1)
    assert np.all(moved[[1, 2, 3, 4]] > 1e-4)  # users with >1 item
    # prefix masking: item outputs are identical whatever the reasoning tokens are
    t1 = bb.encode_extended(ids, tf.random.normal([5, 3, D])).numpy()
    t2 = bb.encode_extended(ids, tf.random.normal([5, 3, D], seed=3) * 4.0).numpy()
    np.testing.assert_allclose(t1[:, :L][ids > 0], base[ids > 0], atol=1e-5)
    np.testing.assert_allclose(t2[:, :L][ids > 0], base[ids > 0], atol=1e-5)
    # ... while the reasoning outputs do depend on them and on every item
    assert np.abs(t1[:, L:] - t2[:, L:]).max() > 1e-3


def test_differs_from_sasrec_with_the_same_weights():
    bert, _ = make(BERT4RecBackbone)
    sas, _ = make(SASRecBackbone)
    sas.set_weights(bert.get_weights())
    ids = batch()
    a, b = bert(ids).numpy(), sas(ids).numpy()
    # user 2 has 7 items: every position but the newest sees different keys
    assert np.abs(a[2, :-1] - b[2, :-1]).max() > 1e-3


def test_config_round_trip_and_registry():
    bb, _ = make()
    ids = batch()
    clone = BERT4RecBackbone.from_config(bb.get_config())
    clone.build(None)
    clone.set_weights(bb.get_weights())
    np.testing.assert_allclose(clone(ids).numpy(), bb(ids).numpy(), atol=1e-6)
    built = build_backbone(Config(backbone="bert4rec", hidden_size=D, num_heads=2), 30)
    assert isinstance(built, BERT4RecBackbone) and built.bidirectional_items


def test_all_position_samples_are_refused():
    with pytest.raises(ValueError, match="bert4rec.*prefix"):
        Config(backbone="bert4rec", sample_mode="all")
