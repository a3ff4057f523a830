import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.config import Config
from rearec_tf.data import DataError, leave_one_out, prepare
from rearec_tf.data.pipeline import eval_dataset, num_train_samples, train_dataset


@pytest.fixture(scope="module")
def small():
    # a..g = 1..7, h..k = 8..11
    seqs = {"A": list("abcdefg"), "B": list("hijk"), "C": list("ahb")}
    s = leave_one_out(seqs)
    assert [t.tolist() for t in s.train] == [[1, 2, 3, 4, 5], [8, 9], [1]]
    return s


def collect(ds):
    out = {}
    for batch in ds:
        for k, v in batch.items():
            out.setdefault(k, []).append(v.numpy())
    return out


def test_prefix_exact(small):
    assert num_train_samples(small, "prefix") == 5
    ds = train_dataset(small, max_len=3, batch_size=100, shuffle=False)
    assert ds.element_spec["item_ids"].shape.as_list() == [None, 3]
    assert ds.element_spec["item_ids"].dtype == tf.int32
    assert ds.element_spec["target"].dtype == tf.int32
    (b,) = list(ds)
    assert b["item_ids"].numpy().tolist() == [
        [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4],  # user A, truncated to last 3
        [0, 0, 8]]                                      # user B; C has 1 train item: none
    assert b["target"].numpy().tolist() == [2, 3, 4, 5, 9]


def test_prefix_batches_and_drop_remainder(small):
    got = collect(train_dataset(small, 3, 2, shuffle=False))
    assert [x.shape[0] for x in got["target"]] == [2, 2, 1]
    got = collect(train_dataset(small, 3, 2, shuffle=False, drop_remainder=True))
    assert [x.tolist() for x in got["target"]] == [[2, 3], [4, 5]]


def test_all_mode_exact(small):
    assert num_train_samples(small, "all") == 2
    (b,) = list(train_dataset(small, max_len=3, batch_size=8, mode="all", shuffle=False))
    assert set(b) == {"item_ids", "targets"}
    assert b["item_ids"].numpy().tolist() == [[2, 3, 4], [0, 0, 8]]
    assert b["targets"].numpy().tolist() == [[3, 4, 5], [0, 0, 9]]
    (b,) = list(train_dataset(small, max_len=6, batch_size=8, mode="all", shuffle=False))
    assert b["item_ids"].numpy().tolist() == [[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 0, 8]]
    assert b["targets"].numpy().tolist() == [[0, 0, 2, 3, 4, 5], [0, 0, 0, 0, 0, 9]]


def test_eval_dataset_exact(small):
    assert [h.tolist() for h in small.test.histories] == [[1, 2, 3, 4, 5, 6], [8, 9, 10], [1, 8]]
    b1, b2 = list(eval_dataset(small.test, max_len=3, batch_size=2))
    assert b1["item_ids"].numpy().tolist() == [[4, 5, 6], [8, 9, 10]]
    assert b1["target"].numpy().tolist() == [7, 11]
    assert b1["history"].numpy().tolist() == [[1, 2, 3, 4, 5, 6], [8, 9, 10, 0, 0, 0]]
    assert b2["item_ids"].numpy().tolist() == [[0, 1, 8]]
    assert b2["target"].numpy().tolist() == [2]
    assert b2["history"].numpy().tolist() == [[1, 8]]  # M = longest history in the batch
    assert b2["history"].dtype == tf.int32
    (v,) = list(eval_dataset(small.valid, max_len=4, batch_size=10))
    assert v["item_ids"].numpy().tolist() == [[2, 3, 4, 5], [0, 0, 8, 9], [0, 0, 0, 1]]
    assert v["target"].numpy().tolist() == [6, 10, 8]


def test_shuffle_deterministic_and_reshuffles():
    rng = np.random.default_rng(0)
    seqs = {str(u): [str(x) for x in rng.integers(1, 40, size=12)] for u in range(40)}
    s = leave_one_out(seqs)
    n = num_train_samples(s, "prefix")
    assert n == 40 * 9

    def epochs(ds, k=2):
        return [np.concatenate([b["target"].numpy() for b in ds]) for _ in range(k)]

    def rows(ds):
        return sorted(tuple(r) + (t,) for b in ds for r, t in
                      zip(b["item_ids"].numpy().tolist(), b["target"].numpy().tolist()))

    a = epochs(train_dataset(s, 5, 64, seed=3))
    b = epochs(train_dataset(s, 5, 64, seed=3))
    c = epochs(train_dataset(s, 5, 64, seed=4))
    plain = np.concatenate([x["target"].numpy() for x in train_dataset(s, 5, 64, shuffle=False)])
    assert all(len(x) == n for x in a)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # same seed, same order
    assert not np.array_equal(a[0], a[1])                              # new order each epoch
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], plain)
    assert sorted(a[0].tolist()) == sorted(plain.tolist())
    assert rows(train_dataset(s, 5, 64, seed=3)) == rows(train_dataset(s, 5, 64, shuffle=False))
    e1 = epochs(train_dataset(s, 5, 64, seed=3, epoch=1))
    assert np.array_equal(e1[0], e1[1])                                # fixed epoch: fixed order
    assert np.array_equal(e1[0], epochs(train_dataset(s, 5, 64, seed=3, epoch=1), 1)[0])
    assert not np.array_equal(e1[0], epochs(train_dataset(s, 5, 64, seed=3, epoch=2), 1)[0])


def test_errors(small):
    with pytest.raises(DataError, match="mode='bert'"):
        train_dataset(small, 3, 2, mode="bert")
    with pytest.raises(DataError, match="must be >= 1"):
        train_dataset(small, 0, 2)


def test_beauty_prefix_epoch(data_dir):
    s = prepare(Config(dataset="beauty", data_dir=str(data_dir)))
    assert num_train_samples(s, "prefix") == 131413
    assert num_train_samples(s, "all") == 22363
    ds = train_dataset(s, 50, 2048, seed=0)
    n = 0
    for b in ds:
        n += int(b["target"].shape[0])
        assert b["item_ids"].shape[1] == 50
    assert n == 131413
    b = next(iter(eval_dataset(s.test, 50, 4)))
    # user 1 of Beauty.txt: 1 2 3 4 5 -> test target 5, history 1 2 3 4
    assert b["item_ids"].numpy()[0, -5:].tolist() == [0, 1, 2, 3, 4]
    assert b["target"].numpy()[0] == 5
    assert b["history"].numpy()[0, :5].tolist() == [1, 2, 3, 4, 0]


def as_list(ds):
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def _by_sample(batches, key="item_ids"):
    """Map (left-padded row with pads stripped) -> count, independent of batch layout."""
    out = {}
    for b in batches:
        for row, tgt in zip(b[key], b["target"]):
            k = (tuple(int(x) for x in row if x), int(tgt))
            out[k] = out.get(k, 0) + 1
    return out


def test_buckets_same_samples_narrower_batches(small):
    full = as_list(train_dataset(small, 4, 2, seed=3))
    buck = as_list(train_dataset(small, 4, 2, seed=3, buckets=(2, 4)))
    assert _by_sample(full) == _by_sample(buck)
    widths = sorted({b["item_ids"].shape[1] for b in buck})
    assert widths == [2, 4]
    for b in buck:  # every row fits its bucket: nothing real was cut
        n_real = (b["item_ids"] > 0).sum(1)
        assert n_real.max() <= b["item_ids"].shape[1]
        if b["item_ids"].shape[1] == 4:
            assert n_real.min() > 2


def test_buckets_deterministic_and_epoch_pinned(small):
    a = as_list(train_dataset(small, 4, 2, seed=5, buckets=(2, 4), epoch=1))
    b = as_list(train_dataset(small, 4, 2, seed=5, buckets=(2, 4), epoch=1))
    assert all(np.array_equal(x["item_ids"], y["item_ids"]) for x, y in zip(a, b))
    ds = train_dataset(small, 4, 2, seed=5, buckets=(2, 4))
    first, second = as_list(ds), as_list(ds)
    assert _by_sample(first) == _by_sample(second)
    assert any(not np.array_equal(x["target"], y["target"]) for x, y in zip(first, second))
    with pytest.raises(DataError, match="buckets"):
        train_dataset(small, 4, 2, buckets=(2, 3))


def test_eval_buckets_keep_every_instance_once(small):
    full = as_list(eval_dataset(small.test, 4, 3))
    buck = as_list(eval_dataset(small.test, 4, 3, buckets=(2, 4)))
    idx = np.concatenate([b["index"] for b in buck])
    assert sorted(idx.tolist()) == list(range(len(small.test.targets)))
    want = {int(i): (tuple(r[r > 0]), int(t)) for b in full
            for i, r, t in zip(b["index"], b["item_ids"], b["target"])}
    got = {int(i): (tuple(r[r > 0]), int(t)) for b in buck
           for i, r, t in zip(b["index"], b["item_ids"], b["target"])}
    assert got == want
