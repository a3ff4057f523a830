"""Group binning of rearec_tf.analysis on a hand-made evaluation set (exact values)."""
import numpy as np
import pytest

from rearec_tf import analysis
from rearec_tf.data.preprocess import EvalSet

# history lengths 1 3 4 5 9 10 19 20 25 2 -> fixed bins [1-4] [5-9] [10-19] [20+]
LENS = [1, 3, 4, 5, 9, 10, 19, 20, 25, 2]
# targets; item_counts[item] = training frequency
TARGETS = [1, 2, 3, 4, 5, 1, 2, 6, 7, 8]
COUNTS = np.array([0, 10, 3, 0, 50, 7, 1, 100, 3])  # index 0 = padding
# count of each instance's target: 10 3 0 50 7 10 3 1 100 3


def _evalset():
    hist = [np.arange(1, n + 1, dtype=np.int32) for n in LENS]
    return EvalSet(hist, np.array(TARGETS, np.int32), np.arange(len(LENS), dtype=np.int32))


def test_fixed_length_bins():
    group, desc = analysis.length_groups(_evalset())
    assert [d["group"] for d in desc] == ["1-4", "5-9", "10-19", "20+"]
    assert group.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 0]


def test_length_bins_add_a_zero_group_and_quantiles():
    ev = _evalset()
    ev.histories[0] = np.zeros(0, np.int32)  # a user with no history (timestamp split)
    group, desc = analysis.length_groups(ev)
    assert desc[0]["group"] == "0" and group[0] == 0 and group[1] == 1
    # quantile bins: lengths sorted 1 2 3 4 5 9 10 19 20 25; quartiles ("lower": sorted
    # index floor(9q)) 3, 5, 10
    group, desc = analysis.length_groups(_evalset(), "quantile", n_length_groups=4)
    assert [d["group"] for d in desc] == ["1-3", "4-5", "6-10", "11+"]
    assert group.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 0]


def test_popularity_equal_groups_tail_to_head():
    group, desc = analysis.popularity_groups(_evalset(), COUNTS, n_groups=5)
    # order by (count, item, position): i2(0) i7(1) i1(3,item2) i6(3,item2) i9(3,item8)
    #                                   i4(7) i0(10) i5(10) i3(50) i8(100)
    assert group.tolist() == [3, 1, 0, 4, 2, 3, 1, 0, 4, 2]
    assert [d["group"] for d in desc] == ["G1 (tail)", "G2", "G3", "G4", "G5 (head)"]
    assert [(d["min_count"], d["max_count"]) for d in desc] == \
        [(0, 1), (3, 3), (3, 7), (10, 10), (50, 100)]
    assert [d["items"] for d in desc] == [2, 1, 2, 1, 2]


def test_popularity_quantile_keeps_ties_together():
    group, desc = analysis.popularity_groups(_evalset(), COUNTS, n_groups=2, scheme="quantile")
    # median ("lower") of 0 1 3 3 3 7 10 10 50 100 is 3: counts <= 3 | > 3
    assert group.tolist() == [1, 0, 0, 1, 1, 1, 0, 0, 1, 0]
    assert [(d["min_count"], d["max_count"]) for d in desc] == [(0, 3), (7, 100)]


def test_group_metrics_and_relative_gains():
    ev = _evalset()
    base = {"ndcg@20": np.array([.1, .2, 0, .4, .5, .6, .7, 0, .9, .3]),
            "recall@20": np.array([1, 1, 0, 1, 1, 1, 1, 0, 1, 1], float)}
    meth = {"ndcg@20": base["ndcg@20"] * np.array([2, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            "recall@20": base["recall@20"].copy()}
    meth["ndcg@20"][7] = 0.5  # length group 20+, base 0 there for instance 7
    g = analysis.group_metrics(base, ev, COUNTS)
    first = g["length"][0]  # instances 0 1 2 9
    assert first["count"] == 4 and first["ndcg@20"] == pytest.approx((.1 + .2 + 0 + .3) / 4)
    assert first["recall@20"] == pytest.approx(0.75)
    cmp = analysis.compare_groups(base, meth, ev, COUNTS)
    row = cmp["length"][0]
    assert row["base"]["ndcg@20"] == pytest.approx(0.15)
    assert row["method"]["ndcg@20"] == pytest.approx(0.175)
    assert row["gain"]["ndcg@20"] == pytest.approx(100 * (0.175 / 0.15 - 1))
    assert row["gain"]["recall@20"] == pytest.approx(0.0)
    # 20+ group: instances 7 (0 -> .5) and 8 (.9): base .45, method .7
    assert cmp["length"][3]["gain"]["ndcg@20"] == pytest.approx(100 * (0.7 / 0.45 - 1))
    # popularity G1 = instances 2 and 7: base 0 -> gain undefined
    assert cmp["popularity"][0]["base"]["ndcg@20"] == 0.0
    assert cmp["popularity"][0]["gain"]["ndcg@20"] is None
    assert cmp["overall"]["count"] == 10
    with pytest.raises(ValueError, match="EvalSet order"):
        analysis.group_metrics({"ndcg@20": np.zeros(3), "recall@20": np.zeros(3)}, ev, COUNTS)
