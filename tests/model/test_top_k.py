"""block_top_k equals tf.math.top_k, values and indices, ties included; BlockBruteForce
equals TFRS's BruteForce."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

import tensorflow_recommenders as tfrs

from rearec_tf.layers.top_k import BlockBruteForce, block_top_k


@pytest.mark.parametrize("n,k,block", [(12101, 30, 128), (12101, 1, 128), (1000, 7, 16),
                                       (300, 2, 128), (300, 200, 8), (5, 5, 128), (64, 4, 16),
                                       (1000, 7, 128), (1000, 8, 128)])  # 7 of 8 blocks; fallback
def test_equals_tf_top_k_with_ties(n, k, block):
    rng = np.random.default_rng(n + k)
    for scores in (rng.standard_normal((5, n)).astype(np.float32),
                   rng.integers(0, 6, (5, n)).astype(np.float32),   # many ties
                   np.where(rng.random((5, n)) < 0.5, -np.inf, 1.0).astype(np.float32)):
        want_v, want_i = tf.math.top_k(scores, k)
        got_v, got_i = block_top_k(scores, k, block)
        np.testing.assert_array_equal(got_v.numpy(), want_v.numpy())
        np.testing.assert_array_equal(got_i.numpy(), want_i.numpy())


def test_in_a_graph_with_unknown_shapes():
    f = tf.function(lambda s, k: block_top_k(s, k, 16),
                    input_signature=[tf.TensorSpec([None, None], tf.float32),
                                     tf.TensorSpec([], tf.int32)])
    s = np.random.default_rng(0).integers(0, 3, (3, 500)).astype(np.float32)
    for k in (1, 3, 15, 16, 400):
        np.testing.assert_array_equal(f(s, k)[1].numpy(), tf.math.top_k(s, k)[1].numpy())
    assert f(np.zeros((0, 500), np.float32), 3)[1].shape == (0, 3)


def test_block_brute_force_equals_tfrs_brute_force():
    rng = np.random.default_rng(3)
    cands = rng.integers(-3, 4, (2000, 8)).astype(np.float32)  # integer scores: many ties
    ids = np.arange(1, 2001, dtype=np.int64)
    queries = rng.integers(-2, 3, (6, 8)).astype(np.float32)
    ref = tfrs.layers.factorized_top_k.BruteForce(k=5)
    ref.index(cands, identifiers=ids)
    ours = BlockBruteForce(k=5, block=32)
    ours.index(cands, identifiers=ids)
    assert ours._candidates.shape == (8, 2000)
    for k in (None, 1, 12):
        (wv, wi), (gv, gi) = ref(queries, k=k), ours(queries, k=k)
        np.testing.assert_array_equal(gv.numpy(), wv.numpy())
        np.testing.assert_array_equal(gi.numpy(), wi.numpy())
    with pytest.raises(ValueError, match="one identifier per candidate"):
        BlockBruteForce().index(cands, identifiers=ids[:10])
