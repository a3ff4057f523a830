"""recompute_layers (gradient checkpointing): same loss and same gradients as the plain
encoder in training mode with dropout on, eagerly and traced, for the whole-sequence and
the last-position (prefix-sample) encodings; and a clear refusal without seeded dropout."""
import numpy as np
import pytest
import tensorflow as tf

from rearec_tf.backbones.bert4rec import BERT4RecBackbone
from rearec_tf.backbones.sasrec import SASRecBackbone
from rearec_tf.layers.randomness import seeded

ITEMS = np.array([[0, 0, 3, 7, 1, 9], [4, 2, 8, 5, 6, 2], [0, 0, 0, 0, 11, 3]], np.int32)


def _pair(cls):
    kw = dict(num_items=12, max_len=6, hidden_size=16, num_layers=2, num_heads=2, ffn_size=24,
              hidden_dropout=0.3, attention_dropout=0.3, input_dropout=0.2)
    plain, rc = cls(**kw), cls(recompute_layers=True, **kw)
    plain.build(None)
    rc.build(None)
    rc.set_weights(plain.get_weights())
    return plain, rc


def _loss_and_grads(backbone, last_only):
    with tf.GradientTape() as tape, seeded(tf.constant([3, 11], tf.int64)):
        h, cache = backbone.encode(tf.constant(ITEMS), extra_slots=2, training=True,
                                   last_only=last_only)
        w = tf.sin(tf.reshape(tf.range(tf.size(h), dtype=tf.float32), tf.shape(h)))
        k0 = cache["layers"][0][0]  # gradients also flow through the cached keys
        loss = tf.reduce_sum(h * w) + 0.1 * tf.reduce_sum(tf.square(k0))
    return loss, tape.gradient(loss, backbone.trainable_variables)


@pytest.mark.parametrize("cls", [SASRecBackbone, BERT4RecBackbone])
@pytest.mark.parametrize("last_only", [False, True])
def test_recomputed_gradients_equal_plain_ones(cls, last_only):
    plain, rc = _pair(cls)
    for run in (lambda f: f, tf.function):
        ref_loss, ref_grads = run(lambda: _loss_and_grads(plain, last_only))()
        loss, grads = run(lambda: _loss_and_grads(rc, last_only))()
        np.testing.assert_allclose(loss.numpy(), ref_loss.numpy(), rtol=1e-6)
        assert len(grads) == len(ref_grads) == len(plain.trainable_variables)
        for g, r, v in zip(grads, ref_grads, plain.trainable_variables):
            assert g is not None, v.name
            g, r = (tf.convert_to_tensor(t).numpy() for t in (g, r))
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6, err_msg=v.name)
    # dropout was really on: another seed gives another loss
    outs = []
    for s in (3, 4):
        with seeded(tf.constant([s, 11], tf.int64)):
            outs.append(rc.encode(tf.constant(ITEMS), training=True)[0].numpy())
    assert np.abs(outs[0] - outs[1]).max() > 0.1


def test_recompute_refuses_unseeded_training_and_keeps_inference():
    plain, rc = _pair(SASRecBackbone)
    with pytest.raises(ValueError, match="seeded"):
        rc.encode(tf.constant(ITEMS), training=True)
    np.testing.assert_array_equal(rc.encode(tf.constant(ITEMS))[0].numpy(),
                                  plain.encode(tf.constant(ITEMS))[0].numpy())
    assert SASRecBackbone.from_config(rc.get_config()).recompute_layers
