"""FeatureBackbone: the reasoning loop on feature-based item tables (dense and attribute
features, every adapter), one table for tokens and scores, frozen features, config
round trip, checkpoints, export, and an end-to-end train + load_run on real Beauty data."""
import json
import os

import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.feature import FeatureBackbone, item_features_from_checkpoint
from rearec_tf.config import Config
from rearec_tf.models import ReaRecModel
from rearec_tf.reasoning.loop import ReasoningLoop

from _backbones import (D, F, L, MISSING, N, attribute_features, batch, dense_features,
                        make as make_backbone)
from _sequences import assert_cached_equals_recompute


def make(kind="dense", adapter="mlp", with_id=True, **kw):
    return make_backbone("feature", features=kind, adapter=adapter, with_id=with_id, **kw)


# dense + mlp, the contract's feature backbone, is checked there
CASES = [("dense", "linear"), ("dense", "moe"), ("attributes", "mlp"), ("attributes", "moe")]


@pytest.mark.parametrize("kind,adapter", CASES)
def test_cached_loop_equals_recomputation_and_k0_is_the_backbone(kind, adapter):
    bb, loop = make(kind, adapter)
    ids = batch()
    for steps in range(4):
        assert_cached_equals_recompute(loop, ids, steps)
    np.testing.assert_allclose(loop(ids, steps=0).numpy()[:, 0], bb(ids).numpy()[:, -1],
                               atol=1e-6)
    R = loop(ids, steps=3).numpy()
    assert np.abs(R[:, 1] - R[:, 0]).max() > 1e-3  # reasoning moves the state


@pytest.mark.parametrize("kind", ["dense", "attributes"])
def test_tokens_and_scores_use_the_same_table(kind):
    bb, loop = make(kind)
    ids = batch()
    table = bb.item_embeddings.numpy()
    assert table.shape == (N + 1, D)
    np.testing.assert_array_equal(table[0], 0)  # padding row
    x, _ = bb.embed(ids)
    positions = np.maximum(np.cumsum(ids > 0, axis=1) - 1, 0)
    np.testing.assert_allclose(x.numpy() - bb.position_embedding.numpy()[positions],
                               table[ids], atol=1e-6)
    # Change the features of item 3 only: its input token and its score column change
    # (by the same table row), nothing else does.
    user = loop(ids, steps=0)[:, 0]
    scores = tf.einsum("bd,nd->bn", user, bb.item_embeddings).numpy()
    if kind == "dense":
        bb.feature_matrix.scatter_nd_update([[3]], [np.full(F, 2.0, np.float32)])
    else:  # give item 3 the attribute no other item has
        rows = bb.attribute_item_index.numpy()
        assert (rows == 3).any() and not (bb.attribute_index.numpy() == 9).any()
        bb.attribute_index.assign(np.where(rows == 3, 9, bb.attribute_index.numpy()))
    new_table = bb.item_embeddings.numpy()
    changed = np.abs(new_table - table).max(axis=1) > 1e-6
    assert changed[3] and changed.sum() == 1
    new_x = bb.embed(ids)[0].numpy() - bb.position_embedding.numpy()[positions]
    np.testing.assert_allclose(new_x, new_table[ids], atol=1e-6)
    new_scores = tf.einsum("bd,nd->bn", user, bb.item_embeddings).numpy()
    diff = np.abs(new_scores - scores).max(axis=0) > 1e-6
    assert diff[3] and diff.sum() == 1


def test_items_without_features_are_their_id_embedding():
    bb, _ = make("dense", "moe")
    bb.moe_bias.assign(tf.random.normal(bb.moe_bias.shape))  # adapter(0) != 0 now
    table = bb.item_embeddings.numpy()
    ids = bb.item_embedding.numpy()
    for i in MISSING:
        np.testing.assert_array_equal(table[i], ids[i])  # no adapter bias leaks in
    assert np.abs(table[1] - ids[1]).max() > 1e-3
    bb2, _ = make("attributes", "linear", with_id=False)
    bb2.adapter_out.bias.assign(tf.ones([D]))
    table2 = bb2.item_embeddings.numpy()
    assert not hasattr(bb2, "item_embedding")  # no ID table at all
    np.testing.assert_array_equal(table2[list(MISSING)], 0)
    assert (np.abs(table2[1:]).sum(1) > 0).sum() == N - len(MISSING)


def test_adapter_dropout_acts_on_training_tokens_only():
    from rearec_tf.layers import randomness

    feats = dense_features()
    bb = FeatureBackbone(N, feature_dim=F, adapter="mlp", adapter_dropout=0.5,
                         item_features=feats, max_len=L, hidden_size=D, num_layers=1,
                         num_heads=2, ffn_size=24, hidden_dropout=0.0, attention_dropout=0.0,
                         input_dropout=0.0, initializer_range=0.3)
    ids = batch()
    clean = bb(ids, training=False).numpy()
    table = bb.item_embeddings.numpy()
    with randomness.seeded(tf.constant([1, 2], tf.int64)):
        noisy = bb(ids, training=True).numpy()
        again = bb(ids, training=True).numpy()
    assert np.abs(noisy - clean)[ids > 0].max() > 1e-3  # only the adapter drops anything
    np.testing.assert_array_equal(noisy, again)  # stateless, seeded masks
    np.testing.assert_array_equal(bb.item_embeddings.numpy(), table)  # scores: no dropout
    np.testing.assert_allclose(bb(ids, training=False).numpy(), clean, atol=1e-7)


@pytest.mark.parametrize("kind", ["dense", "attributes"])
def test_frozen_data_gets_no_gradient_adapter_and_attributes_do(kind):
    bb, loop = make(kind, "mlp")
    frozen = ([bb.feature_matrix] if kind == "dense" else
              [bb.attribute_item_index, bb.attribute_index]) + [bb.feature_mask]
    trainable_ids = {id(v) for v in bb.trainable_variables}
    for v in frozen:
        assert not v.trainable and id(v) not in trainable_ids
        assert id(v) in {id(w) for w in bb.non_trainable_variables}
    ids = batch()
    with tf.GradientTape(persistent=True) as tape:
        R = loop(ids, steps=2, training=True)
        scores = tf.einsum("bkd,nd->bkn", R, bb.item_embeddings)
        loss = tf.reduce_sum(tf.nn.log_softmax(scores)[..., 1])
    if kind == "dense":
        assert tape.gradient(loss, bb.feature_matrix) is None
    learned = [bb.adapter_hidden.kernel, bb.adapter_out.kernel, bb.item_embedding]
    if kind == "attributes":
        learned.append(bb.attribute_embedding)
    for v in learned:
        g = tf.convert_to_tensor(tape.gradient(loss, v)).numpy()
        assert np.abs(g).sum() > 0, v.name
    # an optimizer step changes the adapter and leaves the frozen data as it was
    before = [v.numpy().copy() for v in frozen]
    kernel = bb.adapter_out.kernel.numpy().copy()
    opt = tf.keras.optimizers.Adam(1e-2)
    grads = tape.gradient(loss, bb.trainable_variables)
    opt.apply_gradients([(g, v) for g, v in zip(grads, bb.trainable_variables) if g is not None])
    for v, b in zip(frozen, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert np.abs(bb.adapter_out.kernel.numpy() - kernel).max() > 1e-4


@pytest.mark.parametrize("kind,adapter", [("dense", "moe"), ("attributes", "mlp")])
def test_get_config_round_trip_carries_shapes_not_data(kind, adapter):
    bb, _ = make(kind, adapter)
    cfg = bb.get_config()
    assert len(json.dumps(cfg)) < 2000  # shapes only: no feature data in the config
    assert cfg["feature_dim"] == (F if kind == "dense" else 0)
    clone = FeatureBackbone.from_config(cfg)
    assert clone.get_config() == cfg
    clone.build(None)
    assert not np.any(clone.feature_mask.numpy())  # zero data until weights are set
    clone.set_weights(bb.get_weights())
    ids = batch()
    np.testing.assert_allclose(clone(ids).numpy(), bb(ids).numpy(), atol=1e-6)
    np.testing.assert_allclose(clone.item_embeddings.numpy(), bb.item_embeddings.numpy(),
                               atol=1e-6)
    loop = ReasoningLoop(bb, steps=2, max_steps=5)
    assert ReasoningLoop.from_config(loop.get_config()).backbone.get_config() == cfg


def test_requires_item_features():
    cfg = Config(backbone="feature", item_features="attributes", hidden_size=16)
    with pytest.raises(ValueError, match="needs item_features.*load_item_features"):
        ReaRecModel(cfg, num_items=N)
    with pytest.raises(ValueError, match="cover 30 items, the model has 31"):
        FeatureBackbone.from_config_object(cfg, N + 1, item_features=dense_features())


def _model(kind="dense", method="prl", adapter="mlp"):
    tf.keras.utils.set_random_seed(0)
    cfg = Config(backbone="feature", item_features="x", feature_adapter=adapter,
                 feature_experts=2, method=method, hidden_size=16, num_heads=2, ffn_size=16,
                 max_len=8, prl_warmup_epochs=0)
    feats = dense_features() if kind == "dense" else attribute_features()
    return ReaRecModel(cfg, num_items=N, item_features=feats), feats


def _data():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, N + 1, size=(64, 8)).astype(np.int32)
    ids[:32, :4] = 0
    target = ((ids[:, -1] * 7) % N + 1).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices({"item_ids": ids, "target": target}).batch(32)


@pytest.mark.parametrize("kind", ["dense", "attributes"])
def test_rearec_model_trains_and_checkpoints_carry_the_features(kind, tmp_path):
    model, feats = _model(kind)
    model.compile(tf.keras.optimizers.Adam(1e-2))
    frozen_before = [w.numpy().copy() for w in model.backbone.non_trainable_weights]
    hist = model.fit(_data(), epochs=1, verbose=0).history
    assert model.phase == "contrastive" and np.isfinite(hist["loss"]).all()
    for w, b in zip(model.backbone.non_trainable_weights, frozen_before):
        np.testing.assert_array_equal(w.numpy(), b)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    back = item_features_from_checkpoint(path, N)
    assert back.kind == kind and back.source.startswith("checkpoint:")
    np.testing.assert_array_equal(back.has_features, feats.has_features)
    if kind == "dense":
        np.testing.assert_array_equal(back.dense, feats.dense)
    else:
        np.testing.assert_array_equal(back.attributes, feats.attributes)
        assert back.num_attributes == feats.num_attributes
    # rebuilt from the checkpoint's own features, the restored model scores identically
    clone = ReaRecModel(model.config, num_items=N, item_features=back)
    tf.train.Checkpoint(model=clone).read(path).expect_partial()
    ids = next(iter(_data()))["item_ids"]
    np.testing.assert_allclose(clone.score_items(clone.user_embedding(ids)).numpy(),
                               model.score_items(model.user_embedding(ids)).numpy(), atol=1e-5)


def test_export_scores_with_the_computed_table(tmp_path):
    from rearec_tf.data import Vocabulary
    from rearec_tf.export import export_model

    model, _ = _model("attributes", method="erl", adapter="moe")
    vocab = Vocabulary([str(i) for i in range(1, N + 1)])
    path = export_model(model, model.config, vocab, str(tmp_path / "export"), warmup=False)
    loaded = tf.saved_model.load(path)
    history = tf.constant([["3", "17", "8"]])
    out = loaded.signatures["score_items"](history=history, candidates=tf.constant([["5", "9"]]),
                                           steps=tf.constant(2))
    ids = tf.constant([[0] * 5 + [3, 17, 8]], tf.int32)
    want = model.score_items(model.user_embedding(ids)).numpy()[0, [5, 9]]
    np.testing.assert_allclose(out["scores"].numpy()[0], want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------- end to end
def test_train_cli_and_load_run_on_real_attributes(data_dir, data_slice, tmp_path):
    from rearec_tf import run_dir as rd
    from rearec_tf import train
    from rearec_tf.data import prepare
    from rearec_tf.data.item_features import load_item_features

    attrs = data_dir / "beauty" / "Beauty_item2attributes.json"
    if not attrs.is_file():
        pytest.skip(f"{attrs} not found")
    sliced = data_slice("beauty/Beauty.txt", 300)
    os.symlink(attrs, sliced.parent / attrs.name)  # found next to the interaction file
    run = tmp_path / "run"
    rc = train.main(["--dataset", "file", "--data-file", str(sliced), "--data-format",
                     "sequences", "--backbone", "feature", "--item-features", "attributes",
                     "--feature-adapter", "moe", "--feature-experts", "2",
                     "--hidden-size", "16", "--num-heads", "1", "--ffn-size", "32",
                     "--num-layers", "1", "--max-len", "10", "--batch-size", "256",
                     "--eval-batch-size", "256", "--epochs", "1", "--steps-per-epoch", "2",
                     "--method", "erl", "--reason-steps", "2", "--verbose", "0",
                     "--run-dir", str(run)])
    assert rc == 0
    with open(run / rd.METRICS) as f:
        metrics = json.load(f)
    assert metrics["test"]["unmasked"]["count"] == 300

    config, vocab, model = rd.load_run(str(run))
    assert config.backbone == "feature" and config.item_features == "attributes"
    bb = model.backbone
    assert isinstance(bb, FeatureBackbone) and bb.adapter == "moe" and bb.num_experts == 2
    split = prepare(config)
    assert vocab == split.vocab
    fresh = load_item_features(config, vocab)
    rows, attrs_ = fresh.attribute_pairs()
    np.testing.assert_array_equal(bb.attribute_item_index.numpy(), rows)
    np.testing.assert_array_equal(bb.attribute_index.numpy(), attrs_)
    # the loaded model reproduces the run's test metric
    from rearec_tf.data.pipeline import default_buckets, eval_dataset
    from rearec_tf.training.evaluation import evaluate_model

    ds = eval_dataset(split.test, config.max_len, config.eval_batch_size,
                      buckets=default_buckets(config.max_len))
    got = evaluate_model(model, ds, modes=("unmasked",), num_items=vocab.size)
    assert got["unmasked"]["ndcg@20"] == pytest.approx(
        metrics["test"]["unmasked"]["ndcg@20"], abs=1e-6)
