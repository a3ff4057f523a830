"""ReasoningLoop behaviour beyond the backbone contract (test_backbone_contract.py), on
SASRec: the step limit and the shared-prefix noisy branch."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from _backbones import batch, make as make_backbone


def make(**kw):
    return make_backbone("sasrec", **kw)


def test_rejects_steps_beyond_the_table():
    _, loop = make(max_steps=3)
    with pytest.raises(ValueError, match="max_steps"):
        loop(batch(), steps=4)


def test_shared_prefix_noisy_branch_equals_duplicated_without_dropout():
    _, loop = make()
    ids = batch()
    noise = tf.random.normal([3, 5, 16], stddev=0.3)
    R, Rn = loop(ids, steps=3, noisy_branch=True, noise=noise)
    Rs, Rns = loop(ids, steps=3, noisy_branch=True, noise=noise, share_prefix=True)
    # Same maths, different batch shapes (B vs 2B rows), so a different float32 summation
    # order: the 1e-5 equivalence bound (1e-6 failed by 1.7e-6 on some CPUs).
    np.testing.assert_allclose(Rs.numpy(), R.numpy(), atol=1e-5)
    np.testing.assert_allclose(Rns.numpy(), Rn.numpy(), atol=1e-5)


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
