"""micro_batches (gradient accumulation): one update over m micro-batches equals the update
over the whole batch for per-sample-mean losses, also for batches that do not divide
evenly and batches smaller than m; the logged loss parts are the batch's."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.config import Config
from rearec_tf.models import ReaRecModel


def _batch(n, items=40, length=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, items + 1, size=(n, length)).astype(np.int32)
    ids[: n // 2, : length // 3] = 0
    return {"item_ids": tf.constant(ids),
            "target": tf.constant(rng.integers(1, items + 1, size=n).astype(np.int32))}


def _after_one_step(method, micro, batch, dropout=0.0):
    cfg = Config(method=method, hidden_size=16, num_heads=2, ffn_size=16, max_len=8,
                 hidden_dropout=dropout, attention_dropout=dropout, input_dropout=dropout,
                 micro_batches=micro, batch_size=64, warmup_epochs=0)
    tf.keras.utils.set_random_seed(0)
    model = ReaRecModel(cfg, num_items=40)
    model.compile(tf.keras.optimizers.SGD(1.0))  # the update is the gradient itself
    before = [v.numpy() for v in model.trainable_variables]
    logs = model.train_step(batch)
    after = [v.numpy() for v in model.trainable_variables]
    return before, after, {k: float(v) for k, v in logs.items()}


@pytest.mark.parametrize("method", ["base", "erl"])
@pytest.mark.parametrize("n,micro", [(12, 3), (11, 4), (3, 5)])
def test_accumulated_update_equals_whole_batch(method, n, micro):
    batch = _batch(n)
    b0, whole, logs_whole = _after_one_step(method, 1, batch)
    b1, acc, logs_acc = _after_one_step(method, micro, batch)
    for x, y in zip(b0, b1):
        np.testing.assert_array_equal(x, y)  # same initial weights
    moved = 0
    for w, a, b in zip(whole, acc, b0):
        np.testing.assert_allclose(a - b, w - b, rtol=2e-4, atol=2e-7)
        moved += int(np.abs(w - b).max() > 1e-6)
    assert moved >= 5  # the check compares real updates, not untouched weights
    for key in ("loss", "loss_rec") + (("loss_kl",) if method == "erl" else ()):
        # atol: the KL at initialisation is ~6e-6, a difference of near-equal terms, so its
        # last digits move with the summation order (1.1e-8 apart on some CPUs)
        np.testing.assert_allclose(logs_acc[key], logs_whole[key], rtol=1e-5, atol=1e-7,
                                   err_msg=key)


def test_micro_batches_draw_their_own_dropout_masks_and_train():
    batch = _batch(16)
    _, acc, logs = _after_one_step("erl", 2, batch, dropout=0.3)
    _, whole, logs_whole = _after_one_step("erl", 1, batch, dropout=0.3)
    assert np.isfinite(logs["loss"]) and abs(logs["loss"] - logs_whole["loss"]) > 1e-6
    assert all(np.isfinite(a).all() for a in acc)


def test_micro_batches_validated():
    with pytest.raises(ValueError, match="micro_batches"):
        Config(micro_batches=0)
    with pytest.raises(ValueError, match="micro_batches"):
        Config(micro_batches=300, batch_size=256)
