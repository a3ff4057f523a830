"""The cached reasoning loop: equivalence with recomputation, K = 0, gradients, XLA."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.sasrec import SASRecBackbone
from rearec_tf.reasoning.loop import ReasoningLoop

from _sequences import assert_cached_equals_recompute, left_padded_batch


def make(seed=0, max_steps=5, init=0.3, **kw):
    tf.keras.utils.set_random_seed(seed)
    bb = SASRecBackbone(num_items=30, max_len=7, hidden_size=16, num_layers=2, num_heads=2,
                        ffn_size=24, hidden_dropout=kw.get("dropout", 0.0),
                        attention_dropout=kw.get("dropout", 0.0),
                        input_dropout=kw.get("dropout", 0.0), initializer_range=init)
    loop = ReasoningLoop(bb, steps=2, max_steps=max_steps, initializer_range=init)
    loop.build(None)
    return bb, loop


def batch():
    return left_padded_batch(width=7)


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4])
def test_cached_loop_equals_full_recomputation(steps):
    _, loop = make()
    ids = batch()
    assert_cached_equals_recompute(loop, ids, steps)


def test_dynamic_steps_in_one_graph_match_static():
    _, loop = make()
    ids = batch()
    fn = tf.function(lambda x, s: loop(x, steps=s), reduce_retracing=True)
    for k in range(6):
        dyn = fn(ids, tf.constant(k)).numpy()
        np.testing.assert_allclose(dyn, loop(ids, steps=k).numpy(), atol=1e-6)
    assert fn.experimental_get_tracing_count() == 1


def test_zero_steps_is_the_plain_backbone():
    bb, loop = make()
    ids = batch()
    # same math; the loop computes only the last position of the final layer
    np.testing.assert_allclose(loop(ids, steps=0).numpy()[:, 0], bb(ids).numpy()[:, -1], atol=1e-6)


def test_item_tokens_never_see_reasoning_tokens():
    bb, loop = make()
    ids = batch()
    base = bb(ids).numpy()
    tokens = tf.random.normal([5, 3, 16])
    ext = bb.encode_extended(ids, tokens).numpy()
    np.testing.assert_allclose(ext[:, :7][ids > 0], base[ids > 0], atol=1e-6)


def test_reasoning_steps_change_the_state_and_use_rpe():
    _, loop = make()
    ids = batch()
    R = loop(ids, steps=3).numpy()
    assert np.abs(R[:, 1] - R[:, 0]).max() > 1e-3
    loop.reasoning_position_embedding.assign(tf.zeros_like(loop.reasoning_position_embedding))
    R0 = loop(ids, steps=3).numpy()
    assert np.abs(R0[:, 1:] - R[:, 1:]).max() > 1e-3
    np.testing.assert_allclose(R0[:, 0], R[:, 0], atol=1e-6)


def test_gradients_reach_rpe_and_flow_through_fed_back_states():
    bb, loop = make()
    ids = batch()
    with tf.GradientTape(persistent=True) as tape:
        R = loop(ids, steps=3, training=True)
        last = tf.reduce_sum(R[:, -1] ** 2)
    g_rpe = tape.gradient(last, loop.reasoning_position_embedding).numpy()
    # rows 0..2 are used by steps 1..3; rows 3..4 are not
    assert np.all(np.abs(g_rpe[:3]).sum(1) > 0)
    np.testing.assert_array_equal(g_rpe[3:], 0)
    # r3 depends on item embeddings of the history only through r0..r2 and the cache:
    g_items = tape.gradient(last, bb.item_embedding)
    assert np.abs(tf.convert_to_tensor(g_items).numpy()).sum() > 0
    # the gradient wrt r_{k-1} flows: compare with the no-cache recomputation's gradient
    with tf.GradientTape() as tape2:
        last2 = tf.reduce_sum(loop.recompute(ids, 3, training=True)[:, -1] ** 2)
    g_rpe2 = tape2.gradient(last2, loop.reasoning_position_embedding).numpy()
    np.testing.assert_allclose(g_rpe, g_rpe2, atol=1e-5)


def test_loop_compiles_with_xla():
    _, loop = make()
    ids = batch()
    fn = tf.function(lambda x: loop(x, steps=tf.constant(3)), jit_compile=True)
    np.testing.assert_allclose(fn(ids).numpy(), loop(ids, steps=3).numpy(), atol=1e-5)


def test_noisy_branch_is_fed_the_clean_state():
    _, loop = make()
    ids = batch()
    noise = tf.zeros([2, 5, 16])
    R, Rn = loop(ids, steps=2, noisy_branch=True, noise=noise)
    np.testing.assert_allclose(R.numpy(), Rn.numpy(), atol=1e-6)
    noise = tf.random.normal([2, 5, 16], stddev=0.5)
    R, Rn = loop(ids, steps=2, noisy_branch=True, noise=noise)
    # the noisy step-1 input is r0(clean) + P0 + eps: recompute it by hand
    bb = loop.backbone
    tok = R[:, 0] + loop.reasoning_position_embedding[0] + noise[0]
    want = bb.encode_extended(ids, tok[:, None]).numpy()[:, -1]
    np.testing.assert_allclose(Rn[:, 1].numpy(), want, atol=1e-5)


def test_rejects_steps_beyond_the_table():
    _, loop = make(max_steps=3)
    with pytest.raises(ValueError, match="max_steps"):
        loop(batch(), steps=4)


def test_get_config_round_trip():
    bb, loop = make()
    clone = ReasoningLoop.from_config(loop.get_config())
    assert clone.max_steps == loop.max_steps and clone.steps == loop.steps
    assert clone.backbone.get_config() == bb.get_config()
    clone_bb = SASRecBackbone.from_config(bb.get_config())
    assert clone_bb.get_config() == bb.get_config()


def test_trimmed_left_padding_gives_identical_states():
    """Length buckets trim all-padding columns; positions count from the oldest real item,
    so a narrower batch yields the same R for every sequence."""
    _, loop = make()
    ids = batch()
    short = ids[[0, 1, 4]]  # lengths 1, 3, 2
    wide = loop(short, steps=3).numpy()
    narrow = loop(short[:, -3:], steps=3).numpy()
    np.testing.assert_allclose(narrow, wide, atol=1e-5)


def test_shared_prefix_noisy_branch_equals_duplicated_without_dropout():
    _, loop = make()
    ids = batch()
    noise = tf.random.normal([3, 5, 16], stddev=0.3)
    R, Rn = loop(ids, steps=3, noisy_branch=True, noise=noise)
    Rs, Rns = loop(ids, steps=3, noisy_branch=True, noise=noise, share_prefix=True)
    np.testing.assert_allclose(Rs.numpy(), R.numpy(), atol=1e-6)
    np.testing.assert_allclose(Rns.numpy(), Rn.numpy(), atol=1e-6)


def test_shared_prefix_shares_step0_dropout_but_not_reasoning_dropout():
    from rearec_tf.layers import randomness
    _, loop = make(dropout=0.3)
    ids = batch()
    with randomness.seeded(tf.constant([1, 2], tf.int64)):
        R, Rn = loop(ids, steps=2, training=True, noisy_branch=True,
                     noise=tf.zeros([2, 5, 16]), share_prefix=True)
    np.testing.assert_array_equal(R.numpy()[:, 0], Rn.numpy()[:, 0])
    assert np.abs(R.numpy()[:, 1] - Rn.numpy()[:, 1]).max() > 1e-4  # own dropout per copy
    with randomness.seeded(tf.constant([1, 2], tf.int64)):
        R2, _ = loop(ids, steps=2, training=True, noisy_branch=True,
                     noise=tf.zeros([2, 5, 16]), share_prefix=True)
    np.testing.assert_array_equal(R.numpy(), R2.numpy())  # seeded: reproducible
