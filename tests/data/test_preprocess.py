import logging

import numpy as np
import pytest

from rearec_tf.config import Config
from rearec_tf.data import (PAD, DataError, Interactions, UnknownIdError, Vocabulary,
                            build_sequences, k_core, leave_one_out, prepare,
                            timestamp_cutoffs, timestamp_split)


def inter(rows, with_ts=True):
    u = [r[0] for r in rows]
    i = [r[1] for r in rows]
    t = [r[2] for r in rows] if with_ts else None
    return Interactions(np.array(u), np.array(i), None if t is None else np.array(t, float),
                        "test-log")


def as_lists(arrays):
    return [np.asarray(a).tolist() for a in arrays]


# -------------------------------------------------------------------------- k-core
def test_k_core_iterates(caplog):
    caplog.set_level(logging.INFO, logger="rearec_tf.data")
    log = inter([("u1", "a", 0), ("u1", "b", 0), ("u1", "c", 0), ("u2", "a", 0), ("u2", "b", 0),
                 ("u3", "a", 0), ("u3", "c", 0), ("u4", "d", 0), ("u4", "a", 0)])
    out = k_core(log, 2)
    # round 1 drops item d (1 interaction); then u4 has 1 interaction left: round 2
    assert list(zip(out.user.tolist(), out.item.tolist())) == [
        ("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "c")]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("round 2" in m for m in msgs)
    assert any("users 4 -> 3, items 4 -> 3, interactions 9 -> 7" in m for m in msgs)
    assert k_core(log, 0) is log and k_core(log, 1) is log
    with pytest.raises(DataError, match="removed every interaction"):
        k_core(log, 5)


# ------------------------------------------------------------------ build_sequences
def test_build_sequences_stable_by_time_then_file_order():
    log = inter([("u2", "x", 5), ("u1", "y", 3), ("u1", "z", 1), ("u2", "w", 5), ("u1", "x", 3)])
    seqs = build_sequences(log)
    assert list(seqs) == ["u2", "u1"]  # users by first occurrence
    assert as_lists(seqs.values()) == [["x", "w"], ["z", "y", "x"]]
    seqs, times = build_sequences(log, return_timestamps=True)
    assert as_lists(times.values()) == [[5.0, 5.0], [1.0, 3.0, 3.0]]
    no_ts = build_sequences(inter([("u2", "x", 0), ("u1", "y", 0), ("u2", "w", 0)], False))
    assert as_lists(no_ts.values()) == [["x", "w"], ["y"]]


# ---------------------------------------------------------------------- vocabulary
def test_vocabulary(tmp_path):
    v = Vocabulary(["b", "a", "c"])
    assert (v.size, v.num_items) == (4, 3)
    assert v.lookup(["a", "c", "b"]).tolist() == [2, 3, 1]
    assert v.lookup(np.array([["c"], ["a"]])).tolist() == [[3], [2]]
    assert v.lookup(["a"]).dtype == np.int32
    with pytest.raises(UnknownIdError, match="item id 'zz' is not in the vocabulary") as e:
        v.lookup(["a", "zz"])
    assert isinstance(e.value, KeyError) and isinstance(e.value, DataError)
    assert v.lookup(["a", "zz"], unknown="pad").tolist() == [2, 0]
    assert v.ids([0, 1, 3]) == [PAD, "b", "c"]
    with pytest.raises(DataError, match="out of range"):
        v.ids([4])
    p = tmp_path / "vocab.json"
    v.save(str(p))
    w = Vocabulary.load(str(p))
    assert w == v and w.items == ["b", "a", "c"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["vocab.json"]
    with pytest.raises(DataError, match="reserved for padding"):
        Vocabulary(["a", PAD])
    with pytest.raises(DataError, match=r"must be unique; duplicated: \['a'\]"):
        Vocabulary(["a", "b", "a"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a rearec_tf vocabulary"):
        Vocabulary.load(str(tmp_path / "bad.json"))


# -------------------------------------------------------------------- leave-one-out
def test_leave_one_out_exact(caplog):
    caplog.set_level(logging.WARNING, logger="rearec_tf.data")
    seqs = {"A": ["a", "b", "c", "d", "e"], "B": ["b", "f", "g"], "C": ["a", "b"]}
    s = leave_one_out(seqs)
    assert s.vocab.items == ["a", "b", "c", "d", "e", "f", "g"]  # a=1 .. g=7
    assert s.users == ["A", "B"]
    assert as_lists(s.train) == [[1, 2, 3], [2]]
    assert as_lists(s.valid.histories) == [[1, 2, 3], [2]]
    assert s.valid.targets.tolist() == [4, 6] and s.valid.users.tolist() == [0, 1]
    assert as_lists(s.test.histories) == [[1, 2, 3, 4], [2, 6]]
    assert s.test.targets.tolist() == [5, 7] and s.test.users.tolist() == [0, 1]
    assert s.train[0].dtype == np.int32 and s.test.targets.dtype == np.int32
    assert s.item_counts.tolist() == [0, 1, 2, 1, 0, 0, 0, 0]
    assert s.stats["skipped_short_users"] == 1 and s.stats["num_train_interactions"] == 4
    assert any("1 user(s) have fewer than 3 interactions" in r.getMessage()
               and "['C']" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match="fewer than 3 interactions"):
        leave_one_out(seqs, strict=True)


# ------------------------------------------------------------------ timestamp split
def test_timestamp_split_exact():
    log = inter([("A", "a", 1), ("A", "b", 2), ("B", "a", 3), ("A", "c", 4), ("B", "c", 5),
                 ("C", "d", 6), ("A", "d", 7), ("B", "e", 8), ("A", "e", 9), ("C", "a", 10)])
    assert timestamp_cutoffs(log.timestamp, (0.6, 0.8)) == (7.0, 9.0)
    s = timestamp_split(log, (0.6, 0.8))
    assert s.vocab.items == ["a", "b", "c", "d", "e"] and s.users == ["A", "B", "C"]
    assert as_lists(s.train) == [[1, 2, 3], [1, 3], [4]]
    assert as_lists(s.valid.histories) == [[1, 2, 3], [1, 3]]
    assert s.valid.targets.tolist() == [4, 5] and s.valid.users.tolist() == [0, 1]
    # test history holds the validation-window interactions too
    assert as_lists(s.test.histories) == [[1, 2, 3, 4], [4]]
    assert s.test.targets.tolist() == [5, 1] and s.test.users.tolist() == [0, 2]
    assert (s.stats["t_valid"], s.stats["t_test"]) == (7.0, 9.0)
    assert s.item_counts.tolist() == [0, 2, 1, 2, 1, 0]


def test_timestamp_split_skips_empty_history(caplog):
    caplog.set_level(logging.WARNING, logger="rearec_tf.data")
    log = inter([("X", "a", 1), ("X", "b", 2), ("Y", "a", 3), ("Y", "b", 4)])
    s = timestamp_split(log, (0.5, 0.75))  # cutoffs 3 and 4
    assert as_lists(s.train) == [[1, 2], []]
    assert len(s.valid) == 0
    assert as_lists(s.test.histories) == [[1]] and s.test.targets.tolist() == [2]
    assert s.stats["skipped_empty_history_valid"] == 1
    assert s.stats["skipped_empty_history_test"] == 0
    assert any("skipped 1 valid and 0 test instance(s) with an empty history" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(DataError, match="needs timestamps"):
        timestamp_split(inter([("X", "a", 0)], with_ts=False))
    with pytest.raises(DataError, match="need 0 < q_valid < q_test < 1"):
        timestamp_split(log, (0.9, 0.8))


# ------------------------------------------------------------------------ real data
def test_prepare_lastfm_deterministic(data_dir):
    cfg = Config(dataset="lastfm", data_dir=str(data_dir))
    a, b = prepare(cfg), prepare(cfg)
    assert a.vocab == b.vocab and a.users == b.users
    assert all(np.array_equal(x, y) for x, y in zip(a.train, b.train))
    assert (a.stats["num_users"], a.stats["num_items"]) == (1090, 3646)
    assert a.stats["num_train_interactions"] == 52551 - 2 * 1090
    # the S3-Rec files number items by first appearance: our rule reproduces the ids
    ids = np.arange(1, 3647).astype(str)
    assert a.vocab.lookup(ids).tolist() == list(range(1, 3647))
    assert a.test.targets[:1].tolist() == [8] and a.test.histories[0].tolist() == list(range(1, 8))
    assert int(a.item_counts.sum()) == 50371


def test_prepare_beauty_kcore_and_ml100k_timestamp(data_dir):
    s = prepare(Config(dataset="beauty", data_dir=str(data_dir), k_core=10))
    assert (s.stats["num_users"], s.stats["num_items"], s.stats["num_interactions"]) == \
        (1340, 733, 28798)
    s = prepare(Config(dataset="ml-100k", data_dir=str(data_dir), split="timestamp"))
    assert (s.stats["t_valid"], s.stats["t_test"]) == (889237269.0, 891382309.0)
    assert (len(s.valid), len(s.test)) == (81, 90)
    assert (s.stats["skipped_empty_history_valid"], s.stats["skipped_empty_history_test"]) == \
        (116, 76)
    assert s.stats["num_train_interactions"] == 79999


def test_prepare_yelp_keeps_repeats(data_dir):
    s = prepare(Config(dataset="yelp", data_dir=str(data_dir)))
    assert (s.stats["num_users"], s.stats["num_items"], s.stats["num_interactions"]) == \
        (30431, 20033, 316354)
    repeats = sum(int(t in h) for h, t in zip(s.test.histories, s.test.targets))
    assert repeats == 2027  # test targets already in the user's history
