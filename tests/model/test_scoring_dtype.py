"""``scoring_dtype='bfloat16'``: the catalogue product (forward and gradients) runs in
bfloat16, the logits and the softmax stay float32; float32 stays exact."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.config import Config
from rearec_tf.tasks.erl import ERLObjective
from rearec_tf.tasks.recommendation import RecommendationLoss


def _data(seed=0, b=16, s=3, d=32, n=500):
    rng = np.random.default_rng(seed)
    return (tf.Variable(rng.standard_normal((b, s, d)).astype(np.float32)),
            tf.Variable(0.3 * rng.standard_normal((n, d)).astype(np.float32)),
            tf.constant(rng.integers(1, n, b)))


def _loss_and_grads(loss_fn, R, E):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    return loss, tape.gradient(loss, [R, E])


@pytest.mark.parametrize("objective", ["next_item", "erl"])
def test_bfloat16_close_to_float32_and_really_rounded(objective):
    R, E, t = _data()
    out = {}
    for dt in ("float32", "bfloat16"):
        rec = RecommendationLoss(scoring_dtype=dt)
        if objective == "erl":
            erl = ERLObjective(rec, temperature=0.5, kl_weight=0.05)
            fn = lambda: erl(R, t, E)["loss"]  # noqa: E731
        else:
            fn = lambda: rec(R[:, 0], t, E, 0.5)  # noqa: E731
        out[dt] = _loss_and_grads(fn, R, E)
    (l32, g32), (l16, g16) = out["float32"], out["bfloat16"]
    assert l16.dtype == tf.float32
    # bfloat16 keeps 8 bits of mantissa: close, but not the float32 answer
    assert float(l16) != float(l32)
    np.testing.assert_allclose(float(l16), float(l32), rtol=2e-2)
    for a, b in zip(g32, g16):
        rel = float(tf.norm(a - b) / tf.norm(a))
        assert 0 < rel < 3e-2, rel
    # float32 is the plain product
    want = tf.einsum("bd,nd->bn", R[:, 0] / 0.5, E)
    got = RecommendationLoss().logits(R[:, :1], t, E, 0.5)[:, 0]
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="scoring_dtype 'float16'"):
        RecommendationLoss(scoring_dtype="float16")
    with pytest.raises(ValueError, match="scoring_dtype"):
        Config(scoring_dtype="half").validate()
    assert RecommendationLoss(scoring_dtype="bfloat16").get_config()["scoring_dtype"] == "bfloat16"
