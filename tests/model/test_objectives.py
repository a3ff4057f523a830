"""ERL and PRL losses against hand/numpy computations on tiny inputs."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.tasks import (ERLObjective, PRLObjective, RecommendationLoss, kl_part,
                             pairwise_kl, reasoning_contrastive_loss, step_temperatures)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ce(logits, y):
    logits = np.asarray(logits, np.float64)
    m = logits.max(-1)
    lse = np.log(np.exp(logits - m[..., None]).sum(-1)) + m
    return np.mean(lse - np.take_along_axis(logits, np.asarray(y)[..., None], -1)[..., 0])


def test_pairwise_kl_equals_naive_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 9)).astype(np.float32) * 2
    ours = pairwise_kl(tf.constant(logits)).numpy()
    p = softmax(logits.astype(np.float64))
    for b in range(3):
        for i in range(4):
            for j in range(4):
                naive = np.sum(p[b, j] * (np.log(p[b, j]) - np.log(p[b, i])))
                assert abs(ours[b, i, j] - naive) < 1e-5
    off = ~np.eye(4, dtype=bool)
    assert abs(kl_part(tf.constant(ours)).numpy() - ours[:, off].mean()) < 1e-6
    lower = np.tril(np.ones((4, 4), bool), -1)
    assert abs(kl_part(tf.constant(ours), "upper").numpy() - ours[:, lower].sum(1).mean()) < 1e-5


def test_kl_gradient_goes_to_the_first_argument_only():
    logits = tf.Variable(np.random.default_rng(1).normal(size=(1, 2, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        kl = pairwise_kl(logits)[0, 0, 1]  # KL(p_1 || sg p_0)
    g = tape.gradient(kl, logits).numpy()
    np.testing.assert_array_equal(g[0, 0], 0)
    assert np.abs(g[0, 1]).sum() > 0


def test_kl_closed_form_gradient_equals_numpy_finite_differences():
    # The closed-form gradient of pairwise_kl against central differences of a float64
    # numpy KL in which the i side (the stop-gradient one) is held at the unperturbed
    # logits; every (i, j) pair, the diagonal included, carries its own upstream weight.
    rng = np.random.default_rng(4)
    z = rng.normal(size=(2, 3, 7)) * 2
    w = rng.normal(size=(2, 3, 3))

    def loss(zj, zi):
        pj, qi = softmax(zj), softmax(zi)
        kl = np.einsum("bjn,bijn->bij", pj, np.log(pj)[:, None] - np.log(qi)[:, :, None])
        return np.sum(kl * w)

    want = np.zeros_like(z)
    eps = 1e-6
    for idx in np.ndindex(*z.shape):
        dz = np.zeros_like(z)
        dz[idx] = eps
        want[idx] = (loss(z + dz, z) - loss(z - dz, z)) / (2 * eps)
    zt = tf.constant(z, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        total = tf.reduce_sum(pairwise_kl(zt) * tf.constant(w, tf.float32))
    np.testing.assert_allclose(total.numpy(), loss(z, z), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(total, zt).numpy(), want, atol=2e-5)


def test_erl_total_and_variants():
    rng = np.random.default_rng(2)
    R = rng.normal(size=(4, 3, 6)).astype(np.float32)
    E = rng.normal(size=(8, 6)).astype(np.float32)
    y = np.array([1, 2, 3, 7])
    tau = 0.7
    obj = ERLObjective(RecommendationLoss(), temperature=tau, kl_weight=0.1)
    parts = obj(tf.constant(R), y, tf.constant(E))
    pooled = R.mean(1) @ E.T / tau
    np.testing.assert_allclose(parts["rec"], ce(pooled, y), atol=1e-5)
    np.testing.assert_allclose(parts["loss"], parts["rec"] - 0.1 * parts["kl"], atol=1e-6)
    per = ERLObjective(RecommendationLoss(), temperature=tau, rec_variant="per_step")
    want = sum(ce(R[:, k] @ E.T / tau, y) for k in range(3))
    np.testing.assert_allclose(per(tf.constant(R), y, tf.constant(E))["rec"], want, atol=1e-5)
    np.testing.assert_allclose(obj.aggregate(tf.constant(R)), R.mean(1), atol=1e-6)


def test_prl_temperatures_and_losses_by_hand():
    assert step_temperatures(0.07, 5.0, 2) == pytest.approx([1.75, 0.35, 0.07])
    assert step_temperatures(1.0, 2.0, 3) == pytest.approx([8.0, 4.0, 2.0, 1.0])
    rng = np.random.default_rng(3)
    R = rng.normal(size=(3, 3, 4)).astype(np.float32)
    Rn = R + rng.normal(size=R.shape).astype(np.float32) * 0.1
    E = rng.normal(size=(6, 4)).astype(np.float32)
    y = np.array([1, 4, 5])
    obj = PRLObjective(RecommendationLoss(), temperature=0.5, alpha=2.0)
    parts = obj(tf.constant(R), y, tf.constant(E), R_noisy=tf.constant(Rn))
    np.testing.assert_allclose(parts["rec"], ce(R[:, 2] @ E.T / 0.5, y), atol=1e-5)
    pl = (ce(R[:, 0] @ E.T / 2.0, y) + ce(R[:, 1] @ E.T / 1.0, y)) / 2
    np.testing.assert_allclose(parts["pl"], pl, atol=1e-5)
    # InfoNCE by hand: anchor noisy r~[b,t], positive clean r[b,t], negatives r[c,t]
    terms = []
    for t in (1, 2):
        for b in range(3):
            s = np.array([Rn[b, t] @ R[c, t] / 0.5 for c in range(3)], np.float64)
            terms.append(np.log(np.exp(s).sum()) - s[b])
    np.testing.assert_allclose(parts["cl"], np.mean(terms), atol=1e-5)
    np.testing.assert_allclose(reasoning_contrastive_loss(tf.constant(Rn), tf.constant(R), 0.5),
                               np.mean(terms), atol=1e-5)
    np.testing.assert_allclose(parts["loss"], parts["rec"] + parts["pl"] + parts["cl"], atol=1e-5)
    summed = PRLObjective(RecommendationLoss(), temperature=0.5, alpha=2.0, step_weighting="sum")
    np.testing.assert_allclose(summed(tf.constant(R), y, tf.constant(E))["pl"], 2 * pl, atol=1e-5)


def test_retrieval_mode_logits_logq_and_hit_removal():
    rng = np.random.default_rng(4)
    counts = np.array([0, 10, 5, 1, 1], np.float64)
    loss = RecommendationLoss("retrieval", item_counts=counts)
    q = rng.normal(size=(4, 1, 3)).astype(np.float32)
    E = rng.normal(size=(5, 3)).astype(np.float32)
    y = np.array([1, 2, 1, 3], np.int32)
    logits = loss.logits(tf.constant(q), y, tf.constant(E)).numpy()[:, 0]
    prob = np.maximum(counts, 1) / np.maximum(counts, 1).sum()
    want = q[:, 0] @ E[y].T - np.log(prob[y])[None, :]
    hit = (y[:, None] == y[None, :]) & ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(logits[~hit], want[~hit], atol=1e-5)
    assert np.all(logits[hit] < -1e8)
    # the TFRS retrieval task gives the CE of the same corrected in-batch logits
    tfrs_loss = loss(tf.constant(q[:, 0]), y, tf.constant(E)).numpy()
    np.testing.assert_allclose(tfrs_loss, ce(np.where(hit, -1e9, want), np.arange(4)), atol=1e-4)
