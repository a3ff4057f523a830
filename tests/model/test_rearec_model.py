"""ReaRecModel: every method under both recommendation-loss modes, phases, inference."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.config import Config
from rearec_tf.models import ReaRecModel


def _data(n=96, items=40, length=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, items + 1, size=(n, length)).astype(np.int32)
    ids[: n // 2, : length // 2] = 0  # some left padding
    target = ((ids[:, -1] * 7) % items + 1).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices({"item_ids": ids, "target": target}).batch(32)


@pytest.mark.parametrize("loss", ["full_softmax", "retrieval"])
@pytest.mark.parametrize("method", ["base", "erl", "prl"])
def test_every_method_trains_under_both_loss_modes(method, loss):
    tf.keras.utils.set_random_seed(0)
    cfg = Config(method=method, loss=loss, hidden_size=16, num_heads=2, ffn_size=16,
                 max_len=8, prl_warmup_epochs=1, warmup_epochs=0)
    model = ReaRecModel(cfg, num_items=40, item_counts=np.arange(41))
    model.compile(tf.keras.optimizers.Adam(1e-2))
    losses, phases = [], []
    for epoch in range(2):
        model.set_epoch(epoch)
        phases.append(model.phase)
        hist = model.fit(_data(), epochs=epoch + 1, initial_epoch=epoch, verbose=0).history
        losses.append(hist["loss"][-1])
        assert np.isfinite(hist["loss"]).all()
    want = {"base": ["base", "base"], "erl": ["reason", "reason"],
            "prl": ["reason", "contrastive"]}[method]
    assert phases == want
    if method == "prl":
        assert hist["loss_cl"][-1] > 0  # the contrastive term is on after its warm-up
    if method == "erl":
        assert hist["loss_kl"][-1] > 0
    emb = model.user_embedding(next(iter(_data()))["item_ids"])
    assert emb.shape == (32, 16) and np.isfinite(emb.numpy()).all()


def test_warmup_epochs_train_the_backbone_alone_then_switch():
    cfg = Config(method="erl", hidden_size=16, ffn_size=16, max_len=8, warmup_epochs=1)
    model = ReaRecModel(cfg, num_items=40)
    assert model.phase_for(0) == "warmup" and model.phase_for(1) == "reason"
    assert model.set_epoch(0) is False and model.set_epoch(1) is True
    assert model.train_function is None  # rebuilt for the new phase


def test_inference_steps_override_within_the_table():
    cfg = Config(method="prl", hidden_size=16, ffn_size=16, max_len=8, max_reason_steps=4)
    model = ReaRecModel(cfg, num_items=40)
    ids = next(iter(_data()))["item_ids"]
    assert model.reason(ids).shape == (32, 3, 16)          # trained K = 2
    assert model.reason(ids, steps=4).shape == (32, 5, 16)
    np.testing.assert_allclose(model.user_embedding(ids, steps=4),
                               model.reason(ids, steps=4)[:, -1], atol=1e-6)
    with pytest.raises(ValueError, match="max_steps"):
        model.reason(ids, steps=5)
