"""GRU4Rec backbone: the recurrent state as the reasoning cache, the recurrence itself,
padding invariance of the cache, the config and the full model on top of it. The loop
contract is in test_backbone_contract.py."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones import build_backbone
from rearec_tf.backbones.gru4rec import GRU4RecBackbone, run_gru_layer
from rearec_tf.config import Config
from rearec_tf.models import ReaRecModel

from _backbones import D, batch, make as make_backbone


def make(**kw):
    return make_backbone("gru4rec", **kw)


# ---------------------------------------------------------------------- cache
def test_cache_is_the_per_layer_final_state_of_fixed_shape():
    bb, _ = make(num_layers=3)
    ids = batch()
    _, cache = bb.encode(ids, extra_slots=0)
    _, cache_more = bb.encode(ids, extra_slots=4, last_only=True)
    assert isinstance(cache, tuple) and len(cache) == 3
    for a, b in zip(cache, cache_more):
        assert a.shape == (5, D)
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ------------------------------------------------------------------ recurrence
def test_sequence_path_equals_stepping_the_keras_cells():
    """The fused (precomputed input gates + tf.scan) path is GRUCell.call, step by step."""
    bb, _ = make()
    ids = batch()
    hidden, cache = bb.encode(ids)
    x = tf.gather(bb.item_embedding, ids)
    states = [tf.zeros([5, D]) for _ in bb.gru_cells]
    want = []
    for t in range(ids.shape[1]):
        h = x[:, t]
        for i, cell in enumerate(bb.gru_cells):
            new, _ = cell(h, [states[i]])
            states[i] = tf.where(ids[:, t:t + 1] > 0, new, states[i])
            h = states[i]
        want.append(bb.out_proj(h))
    np.testing.assert_allclose(hidden.numpy(), tf.stack(want, 1).numpy(), atol=1e-5)
    for got, s in zip(cache, states):
        np.testing.assert_allclose(got.numpy(), s.numpy(), atol=1e-5)


def test_padding_keeps_the_state_at_zero():
    bb, _ = make()
    ids = batch()
    x = tf.gather(bb.item_embedding, ids)
    states = run_gru_layer(bb.gru_cells[0], x, tf.not_equal(ids, 0)).numpy()
    np.testing.assert_array_equal(states[ids == 0], 0.0)
    assert np.all(np.abs(states[ids > 0]).sum(-1) > 0)


@pytest.mark.parametrize("width", [3, 5, 12])
def test_left_padding_amount_does_not_change_the_cache(width):
    """Trimmed or widened padding (length buckets, max_len) gives identical final states
    (the contract checks R)."""
    bb, _ = make()
    ids = batch()[[0, 1, 4]]  # lengths 1, 3, 2
    _, ref_cache = bb.encode(ids)
    if width < ids.shape[1]:
        other = ids[:, -width:]
    else:
        other = np.pad(ids, [[0, 0], [width - ids.shape[1], 0]])
    _, cache = bb.encode(other)
    for a, b in zip(cache, ref_cache):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


# --------------------------------------------------------------------- config
def test_built_from_the_config_object():
    cfg = Config(backbone="gru4rec", hidden_size=D, num_layers=3, hidden_dropout=0.1,
                 input_dropout=0.3, initializer_range=0.05, max_len=9)
    bb = build_backbone(cfg, num_items=11)
    assert isinstance(bb, GRU4RecBackbone) and bb.name == "gru4rec"
    assert (bb.num_items, bb.hidden_size, bb.num_layers, bb.max_len) == (11, D, 3, 9)
    assert (bb.hidden_dropout, bb.input_dropout, bb.initializer_range) == (0.1, 0.3, 0.05)
    bb.build(None)
    assert bb.item_embeddings.shape == (12, D)


# ---------------------------------------------------------------- full model
@pytest.mark.parametrize("method", ["base", "erl", "prl"])
def test_rearec_model_on_gru4rec_computes_a_finite_loss(method):
    tf.keras.utils.set_random_seed(0)
    cfg = Config(backbone="gru4rec", method=method, hidden_size=D, num_layers=2,
                 max_len=8, prl_warmup_epochs=1, warmup_epochs=0, max_reason_steps=4)
    model = ReaRecModel(cfg, num_items=40)
    model.compile(optimizer=tf.keras.optimizers.Adam())
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 41, size=(6, 8)).astype(np.int32)
    ids[:3, :4] = 0
    inputs = {"item_ids": tf.constant(ids), "target": tf.constant(rng.integers(1, 41, 6),
                                                                  tf.int32)}
    for epoch in (0, 1):  # PRL: reasoning phase, then with the contrastive branch
        model.set_epoch(epoch)
        loss = model.compute_loss(inputs, training=True)
        assert np.isfinite(loss.numpy()) and loss.numpy() > 0
    if method == "prl":
        assert model.phase == "contrastive"
    with tf.GradientTape() as tape:
        loss = model.compute_loss(inputs, training=True)
    grads = tape.gradient(loss, model.backbone.trainable_variables)
    assert all(g is not None for g in grads)  # (base leaves the reasoning table unused)
    emb = model.user_embedding(ids, steps=4)
    assert emb.shape == (6, D) and np.isfinite(emb.numpy()).all()
