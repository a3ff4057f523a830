"""GRU4Rec backbone: the recurrent state as the reasoning cache, padding invariance,
gradients, XLA, serialisation and the full model on top of it."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones import build_backbone
from rearec_tf.backbones.gru4rec import GRU4RecBackbone, run_gru_layer
from rearec_tf.config import Config
from rearec_tf.layers import randomness
from rearec_tf.models import ReaRecModel
from rearec_tf.reasoning.loop import ReasoningLoop

from _sequences import assert_cached_equals_recompute, left_padded_batch

D = 16


def make(seed=0, max_steps=5, init=0.3, dropout=0.0, num_layers=2):
    tf.keras.utils.set_random_seed(seed)
    bb = GRU4RecBackbone(num_items=30, max_len=7, hidden_size=D, num_layers=num_layers,
                         hidden_dropout=dropout, input_dropout=dropout, initializer_range=init)
    loop = ReasoningLoop(bb, steps=2, max_steps=max_steps, initializer_range=init)
    loop.build(None)
    return bb, loop


def batch():
    return left_padded_batch(width=7)


# ------------------------------------------------------------- the cached loop
@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4])
def test_cached_loop_equals_full_recomputation(steps):
    _, loop = make()
    ids = batch()
    assert_cached_equals_recompute(loop, ids, steps)


def test_reasoning_steps_change_the_state_and_use_rpe():
    _, loop = make()
    ids = batch()
    R = loop(ids, steps=3).numpy()
    assert np.abs(R[:, 1] - R[:, 0]).max() > 1e-3
    loop.reasoning_position_embedding.assign(tf.zeros_like(loop.reasoning_position_embedding))
    R0 = loop(ids, steps=3).numpy()
    assert np.abs(R0[:, 1:] - R[:, 1:]).max() > 1e-3
    np.testing.assert_allclose(R0[:, 0], R[:, 0], atol=1e-6)


def test_zero_steps_is_the_plain_backbone():
    bb, loop = make()
    ids = batch()
    np.testing.assert_allclose(loop(ids, steps=0).numpy()[:, 0], bb(ids).numpy()[:, -1],
                               atol=1e-6)


def test_dynamic_steps_in_one_graph_match_static():
    _, loop = make()
    ids = batch()
    fn = tf.function(lambda x, s: loop(x, steps=s), reduce_retracing=True)
    for k in range(6):
        np.testing.assert_allclose(fn(ids, tf.constant(k)).numpy(),
                                   loop(ids, steps=k).numpy(), atol=1e-6)
    assert fn.experimental_get_tracing_count() == 1


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
def test_left_padding_amount_does_not_matter(width):
    """Trimmed or widened padding (length buckets, max_len) gives identical states."""
    _, loop = make()
    bb = loop.backbone
    ids = batch()[[0, 1, 4]]  # lengths 1, 3, 2
    ref_R = loop(ids, steps=3).numpy()
    _, ref_cache = bb.encode(ids)
    if width < ids.shape[1]:
        other = ids[:, -width:]
    else:
        other = np.pad(ids, [[0, 0], [width - ids.shape[1], 0]])
    np.testing.assert_allclose(loop(other, steps=3).numpy(), ref_R, atol=1e-6)
    _, cache = bb.encode(other)
    for a, b in zip(cache, ref_cache):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_item_tokens_never_see_reasoning_tokens():
    bb, _ = make()
    ids = batch()
    tokens = tf.random.normal([5, 3, D])
    ext = bb.encode_extended(ids, tokens).numpy()
    assert ext.shape == (5, 10, D)
    np.testing.assert_allclose(ext[:, :7], bb(ids).numpy(), atol=1e-6)


# ------------------------------------------------------------------- training
def test_gradients_reach_every_variable_through_the_loop():
    bb, loop = make(dropout=0.2)
    ids = batch()
    with randomness.seeded(tf.constant([3, 4], tf.int64)):
        with tf.GradientTape() as tape:
            R = loop(ids, steps=3, training=True)
            last = tf.reduce_sum(R[:, -1] ** 2)
    variables = loop.trainable_variables
    assert len(variables) == 1 + 1 + 3 * 2 + 2  # rpe, table, 2 cells x 3, out_proj
    grads = tape.gradient(last, variables)
    for v, g in zip(variables, grads):
        assert g is not None, v.name
        g = tf.convert_to_tensor(g).numpy()
        assert np.isfinite(g).all() and np.abs(g).sum() > 0, v.name
    g_rpe = tf.convert_to_tensor(grads[[v.name for v in variables].index(
        loop.reasoning_position_embedding.name)]).numpy()
    assert np.all(np.abs(g_rpe[:3]).sum(1) > 0)  # rows 0..2 feed steps 1..3
    np.testing.assert_array_equal(g_rpe[3:], 0)


def test_loop_gradient_equals_recomputation_gradient():
    bb, loop = make()
    ids = batch()
    with tf.GradientTape() as tape:
        last = tf.reduce_sum(loop(ids, steps=3)[:, -1] ** 2)
    with tf.GradientTape() as tape2:
        last2 = tf.reduce_sum(loop.recompute(ids, 3)[:, -1] ** 2)
    variables = loop.trainable_variables
    for g, g2 in zip(tape.gradient(last, variables), tape2.gradient(last2, variables)):
        np.testing.assert_allclose(tf.convert_to_tensor(g).numpy(),
                                   tf.convert_to_tensor(g2).numpy(), atol=1e-4)


def test_seeded_dropout_is_reproducible_and_active_in_every_step():
    _, loop = make(dropout=0.3)
    ids = batch()

    def run(seed):
        with randomness.seeded(tf.constant(seed, tf.int64)):
            return loop(ids, steps=2, training=True).numpy()

    a, b, c = run([1, 2]), run([1, 2]), run([1, 3])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c)[:, 1:].max() > 1e-4
    clean = loop(ids, steps=2, training=False).numpy()
    assert np.abs(a - clean)[:, 2].max() > 1e-4


def test_noisy_branch_is_fed_the_clean_state():
    bb, loop = make()
    ids = batch()
    noise = tf.random.normal([2, 5, D], stddev=0.5)
    for share in (False, True):
        R, Rn = loop(ids, steps=2, noisy_branch=True, noise=noise, share_prefix=share)
        tok = R[:, 0] + loop.reasoning_position_embedding[0] + noise[0]
        want = bb.encode_extended(ids, tok[:, None]).numpy()[:, -1]
        np.testing.assert_allclose(Rn[:, 1].numpy(), want, atol=1e-5)
        np.testing.assert_allclose(Rn[:, 0].numpy(), R[:, 0].numpy(), atol=1e-6)


# ------------------------------------------------------------------------ XLA
def test_loop_compiles_with_xla():
    _, loop = make()
    ids = batch()
    fn = tf.function(lambda x: loop(x, steps=tf.constant(3)), jit_compile=True)
    np.testing.assert_allclose(fn(ids).numpy(), loop(ids, steps=3).numpy(), atol=1e-5)


def test_loop_gradient_compiles_with_xla():
    # No dropout: XLA draws stateless random numbers with another algorithm than the
    # CPU kernels, so masks (not the math) would differ between the two.
    _, loop = make()
    ids = batch()
    variables = loop.trainable_variables

    def grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(loop(x, steps=tf.constant(3), training=True)[:, -1] ** 2)
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    got = tf.function(grads, jit_compile=True)(ids)
    want = grads(ids)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-4)


# -------------------------------------------------------------- serialisation
def test_get_config_round_trip():
    bb, loop = make()
    ids = batch()
    clone = GRU4RecBackbone.from_config(bb.get_config())
    assert clone.get_config() == bb.get_config()
    clone.build(None)
    clone.set_weights(bb.get_weights())
    np.testing.assert_allclose(clone(ids).numpy(), bb(ids).numpy(), atol=1e-6)
    loop_clone = ReasoningLoop.from_config(loop.get_config())
    assert isinstance(loop_clone.backbone, GRU4RecBackbone)
    assert loop_clone.backbone.get_config() == bb.get_config()
    loop_clone.build(None)
    loop_clone.set_weights(loop.get_weights())
    np.testing.assert_allclose(loop_clone(ids, steps=3).numpy(), loop(ids, steps=3).numpy(),
                               atol=1e-6)


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
