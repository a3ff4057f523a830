"""rearec_tf.layers.activations.gelu: the training-mode GELU with a closed-form gradient
equals tf.nn.gelu's values and autodiff gradient."""
import numpy as np
import tensorflow as tf

from rearec_tf.layers.activations import gelu


def _values_and_grads(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * tf.reshape(tf.sin(tf.range(tf.size(y), dtype=y.dtype)), tf.shape(y)))
    return y, tape.gradient(loss, x)


def test_training_gelu_matches_tf_gelu_values_and_gradient():
    x = tf.constant(np.random.default_rng(0).normal(0, 3, (4, 7, 5)).astype(np.float32))
    x = tf.concat([x, tf.constant([[[-40., -8., 0., 8., 40.]] * 7], tf.float32)], axis=0)
    ref_y, ref_g = _values_and_grads(lambda t: tf.nn.gelu(t, approximate=False), x)
    for run in (lambda f: f, tf.function):   # eager and traced
        y, g = run(lambda t: _values_and_grads(lambda u: gelu(u, training=True), t))(x)
        np.testing.assert_array_equal(y.numpy(), ref_y.numpy())
        np.testing.assert_allclose(g.numpy(), ref_g.numpy(), rtol=1e-6, atol=1e-7)
    # d/dx gelu at 0 is 1/2; far left 0, far right 1
    x = tf.constant([0., -40., 40.])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(gelu(x, training=True))
    g = tape.gradient(y, x)
    np.testing.assert_allclose(g.numpy(), [0.5, 0.0, 1.0], atol=1e-7)


def test_inference_gelu_is_tf_gelu():
    x = tf.constant([-1.5, 0.25, 3.0])
    np.testing.assert_array_equal(gelu(x).numpy(), tf.nn.gelu(x, approximate=False).numpy())
    np.testing.assert_array_equal(gelu(x, training=False).numpy(),
                                  tf.nn.gelu(x, approximate=False).numpy())
