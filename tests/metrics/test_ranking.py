"""Full-ranking metrics against a brute-force numpy reference."""
import itertools
import math

import numpy as np
import pytest

import rearec_tf  # noqa: F401  (must precede tensorflow)
import tensorflow as tf

from rearec_tf.metrics import (
    RankingAccumulator,
    evaluate_full_ranking,
    metric_names,
    metrics_from_counts,
    ranking_counts,
)

KS = (1, 2, 5, 10)


# ------------------------------------------------------------------ numpy reference
def _apply_masks(row, target, hist, mask_history):
    s = np.array(row, dtype=np.float64)
    s[0] = -np.inf  # padding item
    if mask_history:
        for item in hist:
            if item != target:  # the target is never masked
                s[item] = -np.inf
    return s


def _metric_of_rank(r, ks):
    out = {}
    for k in ks:
        out[f"ndcg@{k}"] = 1.0 / math.log2(r + 1) if r <= k else 0.0
        out[f"recall@{k}"] = 1.0 if r <= k else 0.0
    out["mrr"] = 1.0 / r
    return out


def _mean_over_ranks(ranks, ks):
    per = [_metric_of_rank(r, ks) for r in ranks]
    return {name: float(np.mean([p[name] for p in per])) for name in per[0]}


def brute_force_metrics_numpy(scores, targets, history, mask_history, ks):
    """Per-instance metrics by the definition: explicit loops over items and ranks."""
    scores = np.asarray(scores)
    out = {name: [] for name in metric_names(ks)}
    counts = []
    for b in range(scores.shape[0]):
        tgt = int(targets[b])
        s = _apply_masks(scores[b], tgt, history[b] if history is not None else [], mask_history)
        ts = s[tgt]
        if np.isnan(ts) or ts == -np.inf:
            h, t = scores.shape[1] - 2, 0  # degenerate: worst rank
        else:
            h = t = 0
            for i in range(1, len(s)):
                if i == tgt:
                    continue
                if np.isnan(s[i]) or s[i] > ts:
                    h += 1
                elif s[i] == ts:
                    t += 1
        counts.append((h, t))
        m = _mean_over_ranks(range(h + 1, h + t + 2), ks)
        for name in out:
            out[name].append(m[name])
    return {k: np.array(v) for k, v in out.items()}, np.array(counts)


def permutation_metrics_numpy(scores, targets, history, mask_history, ks):
    """Tiny N: literally average over every tie-breaking order of the real items."""
    scores = np.asarray(scores)
    n = scores.shape[1]
    out = {name: [] for name in metric_names(ks)}
    for b in range(scores.shape[0]):
        tgt = int(targets[b])
        s = _apply_masks(scores[b], tgt, history[b], mask_history)
        ranks = []
        for perm in itertools.permutations(range(1, n)):
            pos = {item: p for p, item in enumerate(perm)}
            order = sorted(range(1, n), key=lambda i: (0 if np.isnan(s[i]) else 1, -s[i], pos[i]))
            ranks.append(order.index(tgt) + 1)
        m = _mean_over_ranks(ranks, ks)
        for name in out:
            out[name].append(m[name])
    return {k: np.array(v) for k, v in out.items()}


def _tf_metrics(scores, targets, history, mask_history, ks=KS, num_items=None):
    h, t = ranking_counts(
        tf.constant(scores, tf.float32), tf.constant(targets), tf.constant(history), mask_history
    )
    m = metrics_from_counts(h, t, ks, num_items)
    return {k: v.numpy() for k, v in m.items()}, np.stack([h.numpy(), t.numpy()], 1)


def _random_case(rng, batch, n, m, value_range=4):
    """Integer scores from a small range (many ties), histories with repeats and pads."""
    scores = rng.integers(0, value_range, size=(batch, n)).astype(np.float32)
    targets = rng.integers(1, n, size=batch)
    history = rng.integers(0, n, size=(batch, m))
    # Half the users re-consume: the target is in their history.
    repeat = rng.random(batch) < 0.5
    history[repeat, rng.integers(0, m, size=int(repeat.sum()))] = targets[repeat]
    history[:, -1] = 0  # some padding
    return scores, targets, history


# ----------------------------------------------------------------------- hand cases
def test_first_with_two_ties():
    # target 2 ties with items 3 and 4, nobody is higher: ranks 1, 2, 3 equally likely
    scores = np.array([[0.0, 3.0, 5.0, 5.0, 5.0, 1.0]])
    m, c = _tf_metrics(scores, [2], [[0]], False)
    assert c.tolist() == [[0, 2]]
    np.testing.assert_allclose(m["ndcg@5"], [np.mean([1 / np.log2(2), 1 / np.log2(3), 1 / np.log2(4)])])
    np.testing.assert_allclose(m["ndcg@1"], [1 / 3])
    np.testing.assert_allclose(m["ndcg@2"], [(1 + 1 / np.log2(3)) / 3])
    np.testing.assert_allclose(m["recall@1"], [1 / 3])
    np.testing.assert_allclose(m["recall@2"], [2 / 3])
    np.testing.assert_allclose(m["recall@5"], [1.0])
    np.testing.assert_allclose(m["mrr"], [(1 + 1 / 2 + 1 / 3) / 3])


def test_pad_column_never_counted():
    # pad scores above the target, or equal to it: neither higher nor a tie
    scores = np.array([[100.0, 1.0, 2.0, 0.5], [2.0, 1.0, 2.0, 0.5]])
    m, c = _tf_metrics(scores, [2, 2], [[0], [0]], False)
    assert c.tolist() == [[0, 0], [0, 0]]
    np.testing.assert_allclose(m["mrr"], [1.0, 1.0])
    np.testing.assert_allclose(m["ndcg@1"], [1.0, 1.0])


def test_repeat_target_is_never_masked():
    scores = np.array([[0.0, 9.0, 8.0, 7.0, 8.0]])
    history = [[1, 2, 2, 0]]  # target 2 was consumed before (and duplicated)
    um, uc = _tf_metrics(scores, [2], history, False)
    mm, mc = _tf_metrics(scores, [2], history, True)
    assert uc.tolist() == [[1, 1]]  # item 1 higher, item 4 ties
    assert mc.tolist() == [[0, 1]]  # item 1 masked, target kept, item 4 still ties
    np.testing.assert_allclose(um["mrr"], [(1 / 2 + 1 / 3) / 2])
    np.testing.assert_allclose(mm["mrr"], [(1 + 1 / 2) / 2])
    np.testing.assert_allclose(mm["recall@1"], [0.5])


def test_masked_items_do_not_tie_with_target():
    # masked items go to -inf; a -inf score elsewhere never ties with a finite target
    scores = np.array([[0.0, 3.0, 3.0, -np.inf, 3.0]])
    _, c = _tf_metrics(scores, [2], [[1, 4]], True)
    assert c.tolist() == [[0, 0]]


def test_degenerate_target_and_nan_items():
    n = 6
    scores = np.array(
        [
            [0.0, 1.0, -np.inf, 2.0, 0.0, -np.inf],  # target -inf -> worst
            [0.0, 1.0, np.nan, 2.0, 0.0, 1.0],  # target NaN -> worst
            [0.0, np.nan, 1.0, np.nan, 0.0, 1.0],  # NaN others count as higher
        ]
    )
    m, c = _tf_metrics(scores, [2, 2, 2], [[0], [0], [0]], False)
    assert c.tolist() == [[n - 2, 0], [n - 2, 0], [2, 1]]
    np.testing.assert_allclose(m["mrr"], [1 / (n - 1), 1 / (n - 1), (1 / 3 + 1 / 4) / 2])
    ref, ref_c = brute_force_metrics_numpy(scores, [2, 2, 2], [[0]] * 3, False, KS)
    np.testing.assert_array_equal(c, ref_c)
    for k in ref:
        np.testing.assert_allclose(m[k], ref[k], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------- random cases
@pytest.mark.parametrize("mask_history", [False, True])
def test_random_ties_vs_brute_force(mask_history):
    rng = np.random.default_rng(0 + mask_history)
    scores, targets, history = _random_case(rng, batch=64, n=40, m=8)
    m, c = _tf_metrics(scores, targets, history, mask_history, ks=(1, 5, 10, 20, 50))
    ref, ref_c = brute_force_metrics_numpy(scores, targets, history, mask_history, (1, 5, 10, 20, 50))
    assert (c[:, 1] > 0).mean() > 0.9  # the case really is about ties
    np.testing.assert_array_equal(c, ref_c)
    for k in ref:
        np.testing.assert_allclose(m[k], ref[k], rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("mask_history", [False, True])
def test_tiny_vs_all_permutations(mask_history):
    rng = np.random.default_rng(10 + mask_history)
    scores, targets, history = _random_case(rng, batch=24, n=6, m=3, value_range=3)
    m, _ = _tf_metrics(scores, targets, history, mask_history, ks=(1, 2, 3, 5))
    ref = permutation_metrics_numpy(scores, targets, history, mask_history, (1, 2, 3, 5))
    for k in ref:
        np.testing.assert_allclose(m[k], ref[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_static_mrr_table_and_large_ranks():
    higher = tf.constant([0, 5, 999, 3000, 9998], tf.int32)
    ties = tf.constant([0, 3, 0, 1000, 0], tf.int32)
    dyn = metrics_from_counts(higher, ties, ks=(5, 10))
    sta = metrics_from_counts(higher, ties, ks=(5, 10), num_items=10000)
    ref = [
        np.mean([1.0 / r for r in range(h + 1, h + t + 2)])
        for h, t in zip(higher.numpy(), ties.numpy())
    ]
    np.testing.assert_allclose(dyn["mrr"].numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(sta["mrr"].numpy(), ref, rtol=1e-10)
    assert dyn["mrr"].numpy()[4] == 1.0 / 9999  # no ties: exact
    np.testing.assert_allclose(dyn["recall@10"].numpy(), [1, 1, 0, 0, 0])
    np.testing.assert_allclose(dyn["recall@5"].numpy(), [1, 0, 0, 0, 0])
    assert set(dyn) == set(metric_names((5, 10)))


# ------------------------------------------------------------------- accumulation
def test_accumulator_means_and_per_instance():
    acc = RankingAccumulator(keep_per_instance=True)
    acc.update({"mrr": tf.constant([1.0, 0.5]), "ndcg@5": np.array([1.0, 0.0])})
    acc.update({"mrr": np.array([0.25]), "ndcg@5": np.array([0.5])})
    res = acc.result()
    assert res["count"] == 3
    assert res["mrr"] == pytest.approx(1.75 / 3)
    assert res["ndcg@5"] == pytest.approx(0.5)
    np.testing.assert_array_equal(acc.per_instance()["mrr"], [1.0, 0.5, 0.25])
    with pytest.raises(ValueError):
        acc.update({"mrr": np.array([1.0])})


def _dataset(scores_shape_rng, n_users, n_items, hist_len, batch_size):
    rng = scores_shape_rng
    _, targets, history = _random_case(rng, n_users, n_items, hist_len)
    item_ids = rng.integers(1, n_items, size=(n_users, 5))
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "uid": np.arange(n_users),
            "item_ids": item_ids,
            "target": targets,
            "history": history,
        }
    ).batch(batch_size)
    return ds, targets, history


def _mean(d):
    return {k: float(np.mean(v)) for k, v in d.items()}


def test_evaluate_batched_equals_one_shot():
    rng = np.random.default_rng(3)
    n_users, n_items = 30, 25
    ds, targets, history = _dataset(rng, n_users, n_items, 6, batch_size=7)  # 5 batches, last short
    all_scores = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32)
    table = tf.constant(all_scores)

    res = evaluate_full_ranking(
        lambda batch: tf.gather(table, batch["uid"]), ds, ks=(5, 10, 20), progress=False
    )
    assert set(res) == {"unmasked", "masked"}
    for mode in ("unmasked", "masked"):
        ref, _ = brute_force_metrics_numpy(all_scores, targets, history, mode == "masked", (5, 10, 20))
        assert res[mode]["count"] == n_users
        assert set(res[mode]) == set(metric_names((5, 10, 20))) | {"count"}
        for k, v in _mean(ref).items():
            assert res[mode][k] == pytest.approx(v, abs=1e-12), (mode, k)


def test_evaluate_steps_oracle_and_aggregate(capsys):
    rng = np.random.default_rng(4)
    n_users, n_items, n_steps = 22, 20, 3
    ds, targets, history = _dataset(rng, n_users, n_items, 5, batch_size=8)
    step_scores = rng.integers(0, 4, size=(n_users, n_steps, n_items)).astype(np.float32)
    table = tf.constant(step_scores)
    agg_scores = step_scores.mean(axis=1)

    res, per = evaluate_full_ranking(
        lambda batch: tf.gather(table, batch["uid"]),
        ds,
        ks=(5, 10),
        progress=True,
        aggregate_fn=lambda batch: tf.reduce_mean(tf.gather(table, batch["uid"]), axis=1),
        num_items=n_items,
        keep_per_instance=True,
    )
    assert "ndcg@10" in capsys.readouterr().out  # progress bar was shown
    for mode in ("unmasked", "masked"):
        masked = mode == "masked"
        assert set(res[mode]) == {"step0", "step1", "step2", "oracle", "aggregate"}
        refs = [
            brute_force_metrics_numpy(step_scores[:, s], targets, history, masked, (5, 10))[0]
            for s in range(n_steps)
        ]
        for s in range(n_steps):
            for k, v in _mean(refs[s]).items():
                assert res[mode][f"step{s}"][k] == pytest.approx(v, abs=1e-12)
        for k in refs[0]:
            best = np.max(np.stack([r[k] for r in refs]), axis=0)  # per-instance max
            assert res[mode]["oracle"][k] == pytest.approx(best.mean(), abs=1e-12)
            np.testing.assert_allclose(per[mode]["oracle"][k], best, atol=1e-12)
            np.testing.assert_allclose(per[mode]["step1"][k], refs[1][k], atol=1e-12)
        agg_ref, _ = brute_force_metrics_numpy(agg_scores, targets, history, masked, (5, 10))
        for k, v in _mean(agg_ref).items():
            assert res[mode]["aggregate"][k] == pytest.approx(v, abs=1e-12)
        assert res[mode]["oracle"]["count"] == n_users
        # the oracle never loses to any single step
        for s in range(n_steps):
            assert res[mode]["oracle"]["mrr"] >= res[mode][f"step{s}"]["mrr"] - 1e-12


def test_evaluate_masked_needs_history():
    ds = tf.data.Dataset.from_tensor_slices(
        {"item_ids": np.ones((4, 3), np.int64), "target": np.ones(4, np.int64)}
    ).batch(2)
    with pytest.raises(ValueError, match="history"):
        evaluate_full_ranking(lambda b: tf.zeros((2, 5)), ds, progress=False)
    res = evaluate_full_ranking(
        lambda b: tf.one_hot(b["target"], 5), ds, modes=("unmasked",), progress=False
    )
    assert res["unmasked"]["mrr"] == pytest.approx(1.0)
