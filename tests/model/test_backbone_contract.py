"""The contract every backbone meets under the ReasoningLoop (see backbones/base.py):
cached loop == recomputation, K = 0 is the plain backbone, one graph for every K, item
tokens never see reasoning tokens, reasoning steps move the state through the reasoning
position table, gradients (exact, everywhere), seeded dropout, XLA, the noisy branch,
padding invariance and serialisation. Backbone-specific behaviour stays in the
per-backbone files."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.layers import randomness
from rearec_tf.reasoning.loop import ReasoningLoop

from _backbones import D, L, NAMES, batch, make
from _sequences import assert_cached_equals_recompute

# trainable variables of the loop: reasoning table + the backbone's
_TRANSFORMER = 2 + 2 + 2 * 16  # item + position tables, input LayerNorm, 2 layers
NUM_VARIABLES = {"sasrec": 1 + _TRANSFORMER, "bert4rec": 1 + _TRANSFORMER,
                 "sasrec_preln": 1 + _TRANSFORMER,  # a final LayerNorm instead of the input one
                 "gru4rec": 1 + 1 + 2 * 3 + 2,  # table, 2 GRU cells x 3, out_proj
                 "feature": 1 + _TRANSFORMER + 4}  # + the MLP adapter's 2 Dense

backbones = pytest.mark.parametrize("name", NAMES)
# the same math in another batch size or graph: float32 rounding (up to ~4e-6 here after
# 4 steps, the feature backbone's adapter)
SAME = dict(rtol=1e-5, atol=1e-5)
GRAD = dict(rtol=1e-4, atol=1e-4)  # gradients reach ~40 here


def _dense(tensors):
    return [tf.convert_to_tensor(t).numpy() for t in tensors]


# A random projection of the last state. (Not sum(R**2): the Transformers end in a
# LayerNorm with unit gain at init, whose outputs' squares sum to d whatever the input,
# so that loss would have gradients of zero up to rounding.)
PROBE = tf.constant(np.random.default_rng(7).normal(size=(5, D)), tf.float32)


def _loss(R):
    return tf.reduce_sum(R[:, -1] * PROBE)


@backbones
@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4])
def test_cached_loop_equals_full_recomputation(name, steps):
    _, loop = make(name)
    assert_cached_equals_recompute(loop, batch(), steps)


@backbones
def test_zero_steps_is_the_plain_backbone(name):
    bb, loop = make(name)
    ids = batch()
    # same math; the loop computes only the last position of the final layer
    np.testing.assert_allclose(loop(ids, steps=0).numpy()[:, 0], bb(ids).numpy()[:, -1],
                               atol=1e-6)


@backbones
def test_dynamic_steps_in_one_graph_match_static(name):
    _, loop = make(name)
    ids = batch()
    fn = tf.function(lambda x, s: loop(x, steps=s), reduce_retracing=True)
    for k in range(6):
        dyn = fn(ids, tf.constant(k)).numpy()
        assert dyn.shape == (5, k + 1, D)
        np.testing.assert_allclose(dyn, loop(ids, steps=k).numpy(), **SAME)
    assert fn.experimental_get_tracing_count() == 1


@backbones
def test_item_tokens_never_see_reasoning_tokens(name):
    """Item outputs are the plain backbone's whatever the reasoning tokens are
    (BERT4Rec's items see each other, never a reasoning token), while the reasoning
    outputs depend on them. Padding outputs too, but for the causal Transformers: their
    padding queries have no valid key and attend uniformly, reasoning tokens included
    (harmless, nothing reads them)."""
    bb, _ = make(name)
    ids = batch()
    base = bb(ids).numpy()
    t1 = bb.encode_extended(ids, tf.random.normal([5, 3, D], seed=1)).numpy()
    t2 = bb.encode_extended(ids, tf.random.normal([5, 3, D], seed=3) * 4.0).numpy()
    assert t1.shape == t2.shape == (5, L + 3, D)
    rows = ids > 0 if name in ("sasrec", "sasrec_preln", "feature") else np.ones(ids.shape, bool)
    np.testing.assert_allclose(t1[:, :L][rows], base[rows], atol=1e-5)
    np.testing.assert_allclose(t2[:, :L][rows], base[rows], atol=1e-5)
    assert np.all(np.abs(t1[:, L:] - t2[:, L:]).max(axis=(1, 2)) > 1e-3)


@backbones
def test_reasoning_steps_change_the_state_and_use_rpe(name):
    _, loop = make(name)
    ids = batch()
    R = loop(ids, steps=3).numpy()
    assert np.all(np.abs(R[:, 1] - R[:, 0]).max(axis=-1) > 1e-3)  # for every user
    loop.reasoning_position_embedding.assign(tf.zeros_like(loop.reasoning_position_embedding))
    R0 = loop(ids, steps=3).numpy()
    assert np.abs(R0[:, 1:] - R[:, 1:]).max() > 1e-3
    np.testing.assert_allclose(R0[:, 0], R[:, 0], atol=1e-6)


@backbones
def test_gradients_reach_every_variable_through_the_loop(name):
    bb, loop = make(name, dropout=0.2)
    ids = batch()
    variables = loop.trainable_variables
    assert len(variables) == NUM_VARIABLES[name]
    with randomness.seeded(tf.constant([3, 4], tf.int64)):
        with tf.GradientTape() as tape:
            loss = _loss(loop(ids, steps=3, training=True))
    grads = tape.gradient(loss, variables)
    # Attention key biases add the same logit to every key of a query: softmax ignores
    # them, so their gradient is zero up to rounding.
    key_biases = {id(layer.attention.key_dense.bias)
                  for layer in getattr(bb, "encoder_layers", [])}
    for i, (v, g) in enumerate(zip(variables, grads)):
        assert g is not None, (i, v.name, v.shape)
        g = tf.convert_to_tensor(g).numpy()
        assert np.isfinite(g).all(), (i, v.name)
        if id(v) in key_biases:
            assert np.abs(g).max() < 1e-5, (i, v.name)
        else:  # O(1) gradients here; rounding noise is below 1e-5
            assert np.abs(g).max() > 1e-2, (i, v.name, v.shape)
    g_rpe = grads[[v is loop.reasoning_position_embedding for v in variables].index(True)]
    g_rpe = tf.convert_to_tensor(g_rpe).numpy()
    assert np.all(np.abs(g_rpe[:3]).sum(1) > 1e-2)  # rows 0..2 feed steps 1..3
    np.testing.assert_array_equal(g_rpe[3:], 0)  # rows 3..4 are not used


@backbones
def test_loop_gradient_equals_recomputation_gradient(name):
    """Gradients flow through the fed-back states and the cache exactly as through the
    cache-free recomputation, for every variable."""
    _, loop = make(name)
    ids = batch()
    variables = loop.trainable_variables
    with tf.GradientTape() as tape:
        loss = _loss(loop(ids, steps=3, training=True))
    with tf.GradientTape() as tape2:
        loss2 = _loss(loop.recompute(ids, 3, training=True))
    np.testing.assert_allclose(loss.numpy(), loss2.numpy(), rtol=1e-5)
    got, want = _dense(tape.gradient(loss, variables)), _dense(tape2.gradient(loss2, variables))
    assert np.abs(got[0]).max() > 1e-2  # the reasoning table
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, **GRAD, err_msg=f"{i} {variables[i].name}")


@backbones
def test_seeded_dropout_is_reproducible_and_active_in_every_step(name):
    _, loop = make(name, dropout=0.3)
    ids = batch()

    def run(seed):
        with randomness.seeded(tf.constant(seed, tf.int64)):
            return loop(ids, steps=2, training=True).numpy()

    a, b, c = run([1, 2]), run([1, 2]), run([1, 3])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c)[:, 1:].max() > 1e-4
    clean = loop(ids, steps=2, training=False).numpy()
    assert np.all(np.abs(a - clean).max(axis=(0, 2)) > 1e-4)  # steps 0, 1 and 2


@backbones
def test_loop_and_its_gradient_compile_with_xla(name):
    # No dropout: XLA draws stateless random numbers with another algorithm than the
    # CPU kernels, so masks (not the math) would differ between the two. One layer: the
    # same ops as two, at ~2/3 of the (slow) compile time. The feature backbone in its
    # other form, attribute pooling (unsorted_segment_sum) + MoE adapter: the dense MLP
    # form has no op the other backbones do not compile already.
    variant = {"features": "attributes", "adapter": "moe"} if name == "feature" else {}
    _, loop = make(name, num_layers=1, **variant)
    ids = batch()
    variables = loop.trainable_variables

    def run(x):
        with tf.GradientTape() as tape:
            R = loop(x, steps=tf.constant(3), training=True)
            loss = _loss(R)
        return R, [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    R, grads = tf.function(run, jit_compile=True)(ids)
    R_eager, grads_eager = run(ids)
    assert R.shape == (5, 4, D)
    np.testing.assert_allclose(R.numpy(), R_eager.numpy(), atol=1e-5)
    np.testing.assert_allclose(R.numpy(), loop(ids, steps=3).numpy(), atol=1e-5)
    for i, (g, w) in enumerate(zip(grads, grads_eager)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), **GRAD,
                                   err_msg=f"{i} {variables[i].name}")


@backbones
@pytest.mark.parametrize("share_prefix", [False, True])
def test_noisy_branch_is_fed_the_clean_state(name, share_prefix):
    bb, loop = make(name)
    ids = batch()
    R, Rn = loop(ids, steps=3, noisy_branch=True, noise=tf.zeros([3, 5, D]),
                 share_prefix=share_prefix)
    np.testing.assert_allclose(Rn.numpy(), R.numpy(), **SAME)
    noise = tf.random.normal([3, 5, D], stddev=0.5, seed=2)
    R, Rn = loop(ids, steps=3, noisy_branch=True, noise=noise, share_prefix=share_prefix)
    np.testing.assert_allclose(R.numpy(), loop(ids, steps=3).numpy(), **SAME)
    np.testing.assert_allclose(Rn[:, 0].numpy(), R[:, 0].numpy(), **SAME)
    # the noisy input at step k is r_{k-1}(clean) + P[k-1] + eps_k; the noisy copy keeps
    # its own cache of the noisy inputs before it: recompute them all by hand
    P = loop.reasoning_position_embedding
    tokens = tf.stack([R[:, k] + P[k] + noise[k] for k in range(3)], axis=1)
    want = bb.encode_extended(ids, tokens).numpy()[:, L:]
    np.testing.assert_allclose(Rn[:, 1:].numpy(), want, atol=1e-5)
    assert np.abs((Rn[:, 1:] - R[:, 1:]).numpy()).max() > 1e-3


@backbones
@pytest.mark.parametrize("width", [3, 5, 12])
def test_left_padding_amount_does_not_matter(name, width):
    """Length buckets trim all-padding columns, a longer max_len adds some; positions
    count from the oldest real item, so every sequence gets the same R."""
    _, loop = make(name)
    ids = batch()[[0, 1, 4]]  # lengths 1, 3, 2
    other = ids[:, -width:] if width < L else np.pad(ids, [[0, 0], [width - L, 0]])
    np.testing.assert_allclose(loop(other, steps=3).numpy(), loop(ids, steps=3).numpy(),
                               atol=1e-5)


@backbones
def test_get_config_round_trip(name):
    bb, loop = make(name, steps=3)  # not the default K = 2, max_steps = 8
    ids = batch()
    clone = ReasoningLoop.from_config(loop.get_config())
    assert type(clone.backbone) is type(bb)
    assert (clone.steps, clone.max_steps, clone.initializer_range) == (3, 5, 0.3)
    assert clone.backbone.get_config() == bb.get_config()
    assert type(bb).from_config(bb.get_config()).get_config() == bb.get_config()
    clone.build(None)
    assert len(clone.weights) == len(loop.weights)
    clone.set_weights(loop.get_weights())
    np.testing.assert_allclose(clone.backbone(ids).numpy(), bb(ids).numpy(), atol=1e-6)
    R = clone(ids).numpy()  # default K
    assert R.shape == (5, 4, D)
    np.testing.assert_allclose(R, loop(ids).numpy(), atol=1e-6)
