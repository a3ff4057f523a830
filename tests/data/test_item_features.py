"""Item features aligned to the vocabulary: the real S3-Rec attribute files and generated
``.npy`` / ``.npz`` / ``.parquet`` vector files; alignment, fallback and rejections."""
import json
import logging
import os

import numpy as np
import pandas as pd
import pytest

from rearec_tf.config import Config
from rearec_tf.data import DataError, DatasetNotFoundError, Vocabulary, prepare
from rearec_tf.data.item_features import (ItemFeatures, attributes_path, load_attribute_file,
                                          load_feature_file, load_item_features)


def _cfg(**kw):
    return Config(backbone="feature", **{"item_features": "attributes", **kw})


@pytest.fixture(scope="module")
def beauty_attributes(data_dir):
    path = data_dir / "beauty" / "Beauty_item2attributes.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open(path) as f:
        return path, json.load(f)


# ------------------------------------------------------------ real attributes
def test_beauty_attributes_align_to_a_real_vocabulary(beauty_attributes, data_slice):
    path, doc = beauty_attributes
    sliced = data_slice("beauty/Beauty.txt", 200)
    split = prepare(Config(dataset="file", data_file=str(sliced), data_format="sequences"))
    vocab = split.vocab
    feats = load_attribute_file(str(path), vocab)
    assert feats.kind == "attributes" and feats.dense is None
    assert feats.attributes.shape[0] == vocab.size and feats.attributes.dtype == np.int32
    # every Beauty item has attributes: full coverage, padding row empty
    assert feats.has_features[1:].all() and not feats.has_features[0]
    assert (feats.attributes[0] == 0).all()
    # attribute indices are the sorted raw attribute ids of the vocabulary's items
    raw = sorted({a for item in vocab.items for a in doc[item]})
    assert feats.num_attributes == len(raw) < 637  # a slice uses a subset of the 637
    assert feats.max_attributes == max(len(doc[i]) for i in vocab.items)
    for item in vocab.items[:50] + vocab.items[-5:]:
        row = feats.attributes[vocab.lookup([item])[0]]
        assert sorted(raw[a - 1] for a in row[row > 0]) == sorted(set(doc[item])), item
    rows, attrs = feats.attribute_pairs()
    assert rows.size == sum(len(set(doc[i])) for i in vocab.items)
    back = ItemFeatures.from_attribute_pairs(vocab.num_items, rows, attrs,
                                             feats.num_attributes, "x")
    np.testing.assert_array_equal(back.attributes, feats.attributes)


def test_named_dataset_attributes_path(data_dir):
    path = attributes_path(Config(dataset="beauty"), data_dir=str(data_dir))
    assert path == str(data_dir / "beauty" / "Beauty_item2attributes.json")
    with pytest.raises(DatasetNotFoundError) as e:
        attributes_path(Config(dataset="ml-1m"), data_dir=str(data_dir))
    msg = str(e.value)
    assert str(data_dir / "ml-1m" / "ml-1m_item2attributes.json") in msg
    assert "beauty" in msg and "lastfm" in msg and "--item-features" in msg


def test_file_dataset_finds_the_attribute_file_next_to_it(beauty_attributes, tmp_path):
    path, _ = beauty_attributes
    data = tmp_path / "Beauty_100.txt"
    data.write_text("1 1 2 3\n")
    cfg = _cfg(dataset="file", data_file=str(data))
    with pytest.raises(DatasetNotFoundError, match="Beauty_100_item2attributes.json"):
        attributes_path(cfg)
    os.symlink(path, tmp_path / "Beauty_item2attributes.json")  # the only one: used
    assert attributes_path(cfg) == str(tmp_path / "Beauty_item2attributes.json")
    feats = load_item_features(cfg, Vocabulary(["1", "2", "3"]))
    assert feats.has_features[1:].all()


# ------------------------------------------------------------- vector files
def _vocab():
    # item "40" is not in the files below (falls back to its ID embedding)
    return Vocabulary(["3", "1", "7", "2", "40"])


def _check_dense(feats, vectors_by_id, vocab):
    assert feats.kind == "dense" and feats.dense.dtype == np.float32
    assert feats.dense.shape == (vocab.size, feats.feature_dim)
    np.testing.assert_array_equal(feats.dense[0], 0)
    assert not feats.has_features[0]
    for item in vocab.items:
        row = vocab.lookup([item])[0]
        if item in vectors_by_id:
            np.testing.assert_allclose(feats.dense[row], vectors_by_id[item], rtol=1e-6)
            assert feats.has_features[row]
        else:
            np.testing.assert_array_equal(feats.dense[row], 0)
            assert not feats.has_features[row]


def test_npy_row_r_is_item_id_r(tmp_path, caplog):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(9, 4))  # ids 0..8; "0", "4".."6", "8" unknown to the vocab
    path = tmp_path / "f.npy"
    np.save(path, matrix)
    vocab = _vocab()
    with caplog.at_level(logging.INFO, logger="rearec_tf.data"):
        feats = load_feature_file(str(path), vocab)
    _check_dense(feats, {str(i): matrix[i] for i in range(9)}, vocab)
    assert feats.coverage == pytest.approx(4 / 5)
    log = caplog.text
    assert "5 of 9 ids are not in the vocabulary" in log
    assert "1 of 5 vocabulary items have no features" in log and "'40'" in log


def test_npz_ids_and_vectors(tmp_path):
    ids = np.array(["7", "1", "2", "3", "99"])
    vectors = np.arange(15, dtype=np.float64).reshape(5, 3) / 7
    path = tmp_path / "f.npz"
    np.savez(path, ids=ids, vectors=vectors)
    vocab = _vocab()
    feats = load_item_features(Config(backbone="feature", item_features=str(path)), vocab)
    _check_dense(feats, dict(zip(ids, vectors)), vocab)
    np.savez(tmp_path / "int.npz", ids=np.array([7, 1, 2, 3]), vectors=vectors[:4])
    feats2 = load_feature_file(str(tmp_path / "int.npz"), vocab)
    np.testing.assert_array_equal(feats2.dense, np.where(np.arange(6)[:, None] == 5, 0,
                                                         feats.dense).astype(np.float32))


def test_parquet_vector_column_and_numeric_columns(tmp_path):
    vocab = _vocab()
    rng = np.random.default_rng(1)
    vecs = {i: rng.normal(size=5) for i in ("1", "2", "3", "7")}
    pd.DataFrame({"item_id": [int(i) for i in vecs],
                  "vector": [list(v) for v in vecs.values()],
                  "title": ["a", "b", "c", "d"]}).to_parquet(tmp_path / "list.parquet")
    _check_dense(load_feature_file(str(tmp_path / "list.parquet"), vocab), vecs, vocab)

    cols = {f"d{j}": [vecs[i][j] for i in vecs] for j in range(5)}
    pd.DataFrame({"asin": list(vecs), **cols, "title": list("abcd")}).to_parquet(
        tmp_path / "cols.parquet")
    cfg = Config(backbone="feature", item_features=str(tmp_path / "cols.parquet"),
                 item_col="asin")
    feats = load_item_features(cfg, vocab)
    assert feats.feature_dim == 5  # the string column is not a dimension
    _check_dense(feats, vecs, vocab)
    with pytest.raises(DataError, match="no id column 'item_id'.*--item-col"):
        load_feature_file(str(tmp_path / "cols.parquet"), vocab)


# ---------------------------------------------------------------- rejections
def test_rejects_a_file_for_other_ids(tmp_path):
    vocab = Vocabulary([str(i) for i in range(1, 11)])
    np.savez(tmp_path / "other.npz", ids=np.array([f"B00{i}" for i in range(8)] + ["1", "2"]),
             vectors=np.ones((10, 3)))
    with pytest.raises(DataError) as e:
        load_feature_file(str(tmp_path / "other.npz"), vocab)
    msg = str(e.value)
    assert "other.npz" in msg and "covers only 2 of the 10" in msg
    assert "'B000'" in msg and "'1'" in msg and "another dataset" in msg
    # string ids against an integer .npy: coverage 0
    with pytest.raises(DataError, match="covers only 0 of the 2"):
        np.save(tmp_path / "m.npy", np.ones((3, 2)))
        load_feature_file(str(tmp_path / "m.npy"), Vocabulary(["a", "b"]))


def test_rejects_wrong_shapes(tmp_path):
    vocab = _vocab()
    np.save(tmp_path / "flat.npy", np.ones(8))
    with pytest.raises(DataError, match=r"flat.npy.*2-D.*row r is the vector.*shape \(8,\)"):
        load_feature_file(str(tmp_path / "flat.npy"), vocab)
    pd.DataFrame({"item_id": [1, 2, 3, 7], "vector": [[1.0, 2.0], [1.0], [3.0, 4.0],
                                                      [5.0, 6.0]]}).to_parquet(
        tmp_path / "ragged.parquet")
    with pytest.raises(DataError, match=r"ragged.parquet.*inconsistent lengths.*'2' has 1"):
        load_feature_file(str(tmp_path / "ragged.parquet"), vocab)
    np.savez(tmp_path / "ragged.npz", ids=np.array([1, 2]),
             vectors=np.array([[1.0, 2.0], [1.0]], dtype=object))
    with pytest.raises(DataError, match="ragged.npz.*2-D float matrix.*one length"):
        load_feature_file(str(tmp_path / "ragged.npz"), vocab)
    np.savez(tmp_path / "nov.npz", ids=np.array([1, 2]), vecs=np.ones((2, 2)))
    with pytest.raises(DataError, match=r"missing array\(s\) \['vectors'\]"):
        load_feature_file(str(tmp_path / "nov.npz"), vocab)
    np.savez(tmp_path / "count.npz", ids=np.array([1, 2, 3]), vectors=np.ones((4, 2)))
    with pytest.raises(DataError, match="3 ids but 4 vectors"):
        load_feature_file(str(tmp_path / "count.npz"), vocab)


def test_rejects_duplicates_and_non_finite(tmp_path):
    vocab = _vocab()
    np.savez(tmp_path / "dup.npz", ids=np.array([1, 2, 3, 2]), vectors=np.ones((4, 2)))
    with pytest.raises(DataError, match=r"dup.npz.*duplicate item id\(s\) \['2'\]"):
        load_feature_file(str(tmp_path / "dup.npz"), vocab)
    (tmp_path / "dup.json").write_text('{"1": [1], "2": [2], "1": [3]}')
    with pytest.raises(DataError, match=r"dup.json.*duplicate item id\(s\) \['1'\]"):
        load_attribute_file(str(tmp_path / "dup.json"), vocab)
    bad = np.ones((8, 3))
    bad[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"nan.npy.*NaN or infinite.*\['7'\]"):
        load_feature_file(str(tmp_path / "nan.npy"), vocab)
    (tmp_path / "list.json").write_text('{"1": 5}')
    with pytest.raises(DataError, match="item '1' has 5"):
        load_attribute_file(str(tmp_path / "list.json"), vocab)


def test_missing_file_and_unknown_format(tmp_path):
    vocab = _vocab()
    with pytest.raises(DatasetNotFoundError, match="nope.npy"):
        load_item_features(_cfg(item_features=str(tmp_path / "nope.npy")), vocab)
    (tmp_path / "f.csv").write_text("x")
    with pytest.raises(DataError, match=r"unknown format '.csv'.*\.npy, \.npz, \.parquet"):
        load_item_features(_cfg(item_features=str(tmp_path / "f.csv")), vocab)


def test_missing_features_without_id_embedding_warns(tmp_path, caplog):
    np.savez(tmp_path / "f.npz", ids=np.array([1, 2, 3, 7]), vectors=np.ones((4, 2)))
    cfg = _cfg(item_features=str(tmp_path / "f.npz"), feature_with_id=False)
    with caplog.at_level(logging.WARNING, logger="rearec_tf.data"):
        load_item_features(cfg, _vocab())
    assert "1 of 5 items have no features" in caplog.text
    assert "--feature-with-id true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rearec_tf.data"):
        load_item_features(cfg.replace(feature_with_id=True), _vocab())
    assert "no features" not in caplog.text
