"""Full-ranking evaluation metrics: NDCG@K, Recall@K (= HR@K) and MRR.

Protocol
--------
Every instance has one target item and is ranked against **all** items. Column 0 of
the score matrix is the padding item: it is never a valid prediction and its score is
set to ``-inf`` before ranking, whatever the model produced there.

With ``rank`` the 1-based position of the target:

* ``NDCG@K = 1 / log2(rank + 1)`` if ``rank <= K`` else 0,
* ``Recall@K = HR@K = 1[rank <= K]`` (one target per instance),
* ``MRR = 1 / rank``.

Two modes are reported:

* ``"unmasked"``: the user's history is ranked like any other item;
* ``"masked"``: the scores of the items in the user's history are set to ``-inf``,
  **except the target itself, which is never masked even if it appears in the
  history** (repeat consumption, e.g. Yelp or Last.fm: masking it would make the
  instance unrankable).

Ties never flatter the model. Let ``h`` be the number of items scoring strictly higher
than the target and ``t`` the number of *other* items scoring exactly the same. The
reported value is the expectation under a uniformly random tie-break, i.e. the mean of
``f(r)`` over ``r = h+1 .. h+t+1``. It is computed exactly and vectorised:

* NDCG@K from the cumulative table ``D(n) = sum_{r<=n} 1/log2(r+1)`` capped at ``K``:
  ``(D(min(h+t+1, K)) - D(min(h, K))) / (t+1)``;
* Recall@K ``= max(0, min(K, h+t+1) - h) / (t+1)``;
* MRR from harmonic numbers ``H(n) = sum_{r<=n} 1/r``: ``(H(h+t+1) - H(h)) / (t+1)``.

Special values:

* the padding column and masked items sit at ``-inf`` and never tie with a finite
  target score;
* another item whose score is NaN counts as scoring *higher* than the target;
* if the target score itself is ``-inf`` or NaN (a degenerate model), the instance gets
  the worst rank: ``h = N - 2`` (every other real item ahead), ``t = 0``;
* a ``+inf`` target ties with other ``+inf`` items like any other value.

Only per-batch ``(B, N)`` score matrices are ever built; the user x item matrix of the
whole evaluation set is never materialised.
"""
from __future__ import annotations

import sys
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

import rearec_tf._env  # noqa: F401  (must precede tensorflow)
import tensorflow as tf

DEFAULT_KS: Tuple[int, ...] = (5, 10, 20, 50)
MODES: Tuple[str, ...] = ("unmasked", "masked")

__all__ = [
    "DEFAULT_KS",
    "MODES",
    "ranking_counts",
    "ranking_counts_both",
    "metrics_from_counts",
    "metric_names",
    "RankingAccumulator",
    "evaluate_full_ranking",
]


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> Tuple[str, ...]:
    """Names of the metrics in the order they are reported."""
    ks = tuple(int(k) for k in ks)
    return tuple([f"ndcg@{k}" for k in ks] + [f"recall@{k}" for k in ks] + ["mrr"])


# --------------------------------------------------------------------------- counts
def ranking_counts(
    scores: tf.Tensor,
    targets: tf.Tensor,
    history: Optional[tf.Tensor] = None,
    mask_history: bool = False,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Count the items ranked above and tied with each target.

    Args:
      scores: ``(B, N)`` float scores over all items; column 0 is padding.
      targets: ``(B,)`` int target item ids in ``[1, N)``.
      history: ``(B, M)`` int item ids of each user's history, 0-padded. Only used
        when ``mask_history`` is true.
      mask_history: give history items ``-inf`` before ranking. The target itself is
        never masked, even if it appears in the history.

    Returns:
      ``(higher, ties)``, both ``(B,)`` int32: the number of items scoring strictly
      higher than the target (NaN scores count as higher) and the number of *other*
      items scoring exactly the same. A target scoring ``-inf`` or NaN gets
      ``higher = N - 2, ties = 0`` (worst rank among the ``N - 1`` real items).
    """
    counts = ranking_counts_both(scores, targets, history if mask_history else None)
    if mask_history:
        if history is None:
            raise ValueError("mask_history=True needs `history`.")
        return counts["masked"]
    return counts["unmasked"]


def ranking_counts_both(scores, targets, history=None):
    """``{"unmasked": (higher, ties), "masked": (higher, ties)}`` from ONE comparison pass.

    The unmasked counts compare every column with the target score once (a ``(B, N)``
    pass, nothing larger). Masking is exact and cheap: the history items' own scores are
    gathered (``(B, M)``), de-duplicated, and those that were counted as higher or tied
    are subtracted, which equals ranking with history scores set to ``-inf``. The pad
    column is excluded the same way; the target is never masked.
    """
    scores = tf.convert_to_tensor(scores)
    if not scores.dtype.is_floating:
        scores = tf.cast(scores, tf.float32)
    targets = tf.cast(tf.reshape(targets, [-1]), tf.int32)
    batch = tf.shape(scores)[0]
    n_cols = tf.shape(scores)[1]
    target_score = tf.gather(scores, targets, batch_dims=1)  # (B,)
    ts = target_score[:, None]

    def above(x):
        return tf.logical_or(x > ts, tf.math.is_nan(x))

    pad = scores[:, :1]
    higher = (tf.reduce_sum(tf.cast(above(scores), tf.int32), axis=1)
              - tf.cast(above(pad)[:, 0], tf.int32))
    ties = (tf.reduce_sum(tf.cast(tf.equal(scores, ts), tf.int32), axis=1) - 1
            - tf.cast(tf.equal(pad, ts)[:, 0], tf.int32))

    degenerate = tf.logical_or(tf.math.is_nan(target_score),
                               tf.equal(target_score, tf.constant(-np.inf, scores.dtype)))
    worst = tf.fill([batch], n_cols - 2)

    def finish(h, t):
        return tf.where(degenerate, worst, h), tf.where(degenerate, tf.zeros_like(t), t)

    out = {"unmasked": finish(higher, ties)}
    if history is not None:
        hist = tf.sort(tf.cast(history, tf.int32), axis=1)
        first = tf.concat([tf.ones([batch, 1], tf.bool),
                           tf.not_equal(hist[:, 1:], hist[:, :-1])], axis=1)
        keep = first & tf.not_equal(hist, 0) & tf.not_equal(hist, targets[:, None])
        hist_scores = tf.gather(scores, hist, batch_dims=1)  # (B, M)
        drop_h = tf.reduce_sum(tf.cast(keep & above(hist_scores), tf.int32), axis=1)
        drop_t = tf.reduce_sum(tf.cast(keep & tf.equal(hist_scores, ts), tf.int32), axis=1)
        out["masked"] = finish(higher - drop_h, ties - drop_t)
    return out


# -------------------------------------------------------------------------- metrics
def _dcg_table(k_max: int) -> np.ndarray:
    """``D[n] = sum_{r=1..n} 1/log2(r+1)`` for ``n = 0 .. k_max`` (float64)."""
    gains = 1.0 / np.log2(np.arange(2, k_max + 2, dtype=np.float64))
    return np.concatenate([[0.0], np.cumsum(gains)])


def _harmonic_table(n_max: int) -> np.ndarray:
    """``H[n] = sum_{r=1..n} 1/r`` for ``n = 0 .. n_max`` (float64)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n_max + 1, dtype=np.float64))])


def metrics_from_counts(
    higher: tf.Tensor,
    ties: tf.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    num_items: Optional[int] = None,
) -> Dict[str, tf.Tensor]:
    """Per-instance expected metrics under uniformly random tie-breaking.

    Args:
      higher, ties: int tensors of any (equal) shape, from :func:`ranking_counts`.
      ks: cut-offs for NDCG@K and Recall@K.
      num_items: optional upper bound on the rank (e.g. ``N``, the number of score
        columns). When given, the harmonic-number table for MRR is a constant of that
        size; otherwise it is built per call up to the largest rank in the batch.

    Returns:
      ``{"ndcg@K": ..., "recall@K": ..., "mrr": ...}``, float64 tensors shaped like
      ``higher``. Each value is the mean of the metric over ranks ``h+1 .. h+t+1``.
    """
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive, got {ks}")
    h = tf.cast(higher, tf.int64)
    t = tf.cast(ties, tf.int64)
    last = h + t + 1  # worst possible rank of the target
    n_pos = tf.cast(t + 1, tf.float64)  # number of equally likely ranks

    out: Dict[str, tf.Tensor] = {}
    dcg = tf.constant(_dcg_table(max(ks)), tf.float64)
    for k in ks:
        kk = tf.constant(k, tf.int64)
        gain = tf.gather(dcg, tf.minimum(last, kk)) - tf.gather(dcg, tf.minimum(h, kk))
        out[f"ndcg@{k}"] = gain / n_pos
    for k in ks:
        kk = tf.constant(k, tf.int64)
        hits = tf.maximum(tf.zeros_like(h), tf.minimum(kk, last) - h)
        out[f"recall@{k}"] = tf.cast(hits, tf.float64) / n_pos

    if num_items is not None:
        harmonic = tf.constant(_harmonic_table(int(num_items)), tf.float64)
    else:
        n_max = tf.maximum(tf.reduce_max(last), tf.constant(1, tf.int64))
        inv = 1.0 / tf.cast(tf.range(1, n_max + 1), tf.float64)
        harmonic = tf.concat([tf.zeros([1], tf.float64), tf.cumsum(inv)], axis=0)
    # Without ties use 1/rank directly: the table difference loses digits at deep ranks.
    from_table = (tf.gather(harmonic, last) - tf.gather(harmonic, h)) / n_pos
    out["mrr"] = tf.where(t == 0, 1.0 / tf.cast(last, tf.float64), from_table)
    return out


# ---------------------------------------------------------------------- accumulator
class RankingAccumulator:
    """Accumulates per-instance metrics over batches (float64 sums and a count).

    ``update(metrics)`` takes a dict name -> per-instance values (tensors or arrays
    of one shape ``(B,)``); ``result()`` returns the means plus ``"count"``. With
    ``keep_per_instance=True`` the values are also kept, see :meth:`per_instance`.
    """

    def __init__(self, keep_per_instance: bool = False):
        self.keep_per_instance = keep_per_instance
        self.reset()

    def reset(self) -> None:
        self._sums: Dict[str, float] = {}
        self._count = 0
        self._values: Dict[str, list] = {}

    @property
    def count(self) -> int:
        return self._count

    def update(self, metrics: Mapping[str, object]) -> None:
        arrays = {name: np.asarray(v, dtype=np.float64).reshape(-1) for name, v in metrics.items()}
        if not arrays:
            return
        sizes = {a.shape[0] for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"per-instance metrics of different sizes: {sizes}")
        if self._sums and set(arrays) != set(self._sums):
            raise ValueError(f"metric names changed: {sorted(arrays)} vs {sorted(self._sums)}")
        for name, a in arrays.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(np.sum(a, dtype=np.float64))
            if self.keep_per_instance:
                self._values.setdefault(name, []).append(a)
        self._count += sizes.pop()

    def result(self) -> Dict[str, float]:
        n = self._count
        res = {name: (s / n if n else float("nan")) for name, s in self._sums.items()}
        res["count"] = n
        return res

    def per_instance(self) -> Dict[str, np.ndarray]:
        if not self.keep_per_instance:
            raise RuntimeError("RankingAccumulator(keep_per_instance=True) is needed.")
        return {
            name: (np.concatenate(v) if v else np.zeros([0], np.float64))
            for name, v in self._values.items()
        }


# ------------------------------------------------------------------------ evaluator
@tf.function(reduce_retracing=True)
def _batch_metrics_2d(scores, targets, history, modes, ks, num_items):
    """Counts + metrics of one ``(B, N)`` batch for each mode; metrics are ``(B,)``."""
    scores = tf.ensure_shape(scores, [None, None])
    counts = ranking_counts_both(scores, targets, history if "masked" in modes else None)
    return {mode: metrics_from_counts(*counts[mode], ks, num_items) for mode in modes}


@tf.function(reduce_retracing=True)
def _batch_metrics_3d(scores, targets, history, modes, ks, num_items):
    """Counts + metrics of one ``(B, S, N)`` batch for each mode; metrics are ``(B, S)``."""
    scores = tf.ensure_shape(scores, [None, None, None])
    b, n_steps, n = tf.shape(scores)[0], tf.shape(scores)[1], tf.shape(scores)[2]
    flat = tf.reshape(scores, [b * n_steps, n])
    flat_targets = tf.repeat(tf.cast(targets, tf.int32), n_steps)
    flat_history = None if history is None else tf.repeat(history, n_steps, axis=0)
    counts = ranking_counts_both(flat, flat_targets,
                                 flat_history if "masked" in modes else None)
    return {mode: metrics_from_counts(tf.reshape(counts[mode][0], [b, n_steps]),
                                      tf.reshape(counts[mode][1], [b, n_steps]), ks, num_items)
            for mode in modes}


def _batch_metrics(scores, targets, history, modes, ks, num_items):
    fn = _batch_metrics_3d if scores.shape.rank == 3 else _batch_metrics_2d
    return fn(scores, targets, history, modes, ks, num_items)


def _num_batches(dataset) -> Optional[int]:
    if isinstance(dataset, tf.data.Dataset):
        card = int(dataset.cardinality().numpy())
        return card if card >= 0 else None
    try:
        return len(dataset)
    except TypeError:
        return None


def evaluate_full_ranking(
    score_fn: Callable[[Mapping[str, tf.Tensor]], tf.Tensor],
    dataset: Iterable[Mapping[str, tf.Tensor]],
    ks: Sequence[int] = DEFAULT_KS,
    modes: Sequence[str] = MODES,
    progress: bool = True,
    aggregate_fn: Optional[Callable[[Mapping[str, tf.Tensor]], tf.Tensor]] = None,
    num_items: Optional[int] = None,
    keep_per_instance: bool = False,
):
    """Full-ranking NDCG@K / Recall@K / MRR over a dataset, per mode.

    Args:
      score_fn: ``batch -> scores`` of shape ``(B, N)`` (one prediction) or
        ``(B, S, N)`` (one per reasoning step). Column 0 is padding.
      dataset: iterable (e.g. ``tf.data.Dataset``) of dicts with ``"item_ids"``
        ``(B, L)``, ``"target"`` ``(B,)`` and ``"history"`` ``(B, M)`` (0-padded; only
        needed for the ``"masked"`` mode).
      ks: cut-offs for NDCG@K and Recall@K.
      modes: subset of ``("unmasked", "masked")``; see the module docstring (in the
        masked mode the target is never masked, even if it is in the history).
      progress: show a ``tf.keras.utils.Progbar``.
      aggregate_fn: optional ``batch -> (B, N)`` scores of an aggregated prediction
        (e.g. mean over steps); reported under ``"aggregate"``.
      num_items: optional bound on the rank (number of score columns), used to build
        the MRR table once.
      keep_per_instance: also return per-instance metric arrays.

    Returns:
      For 2-D scores ``{mode: {"ndcg@5": ..., ..., "mrr": ..., "count": n}}``; with
      ``aggregate_fn`` each mode dict also holds ``"aggregate": {...}``.
      For 3-D scores ``{mode: {"step0": {...}, ..., "step{S-1}": {...}, "oracle":
      {...}[, "aggregate": {...}]}}``, where ``oracle`` averages, per instance and per
      metric, the maximum over steps. With ``keep_per_instance=True`` a pair
      ``(results, per_instance)`` is returned, ``per_instance`` mirroring ``results``
      with float64 arrays in place of means (and no ``"count"``).

    The per-batch counting and metrics run in a ``tf.function``; only the caller's
    ``(B, N)`` (or ``(B, S, N)``) batch of scores is ever materialised.
    """
    ks = tuple(int(k) for k in ks)
    modes = tuple(modes)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes}")
    num_items = None if num_items is None else int(num_items)

    accs: Dict[str, Dict[str, RankingAccumulator]] = {m: {} for m in modes}
    n_steps: Optional[int] = None  # None until the first batch; 0 means 2-D scores

    def acc(mode: str, key: str) -> RankingAccumulator:
        if key not in accs[mode]:
            accs[mode][key] = RankingAccumulator(keep_per_instance)
        return accs[mode][key]

    target_batches = _num_batches(dataset)
    show_k = 10 if 10 in ks else ks[0]
    shown_names = [f"{m[0]}_ndcg@{show_k}" for m in modes]
    bar = None
    if progress:
        bar = tf.keras.utils.Progbar(
            target_batches, stateful_metrics=shown_names, unit_name="batch"
        )
    seen = 0

    for batch in dataset:
        targets = tf.convert_to_tensor(batch["target"])
        history = batch.get("history") if hasattr(batch, "get") else batch["history"]
        if "masked" in modes and history is None:
            raise ValueError('the "masked" mode needs batch["history"].')
        history = None if (history is None or "masked" not in modes) else tf.convert_to_tensor(history)

        scores = tf.convert_to_tensor(score_fn(batch))
        rank = scores.shape.rank
        if rank not in (2, 3):
            raise ValueError(f"score_fn must return (B, N) or (B, S, N), got shape {scores.shape}")
        steps_here = 0 if rank == 2 else int(scores.shape[1])
        if n_steps is None:
            n_steps = steps_here
        elif n_steps != steps_here:
            raise ValueError(f"number of steps changed between batches: {n_steps} vs {steps_here}")

        per_mode = _batch_metrics(scores, targets, history, modes, ks, num_items)
        for mode in modes:
            values = {k: v.numpy() for k, v in per_mode[mode].items()}
            if rank == 2:
                acc(mode, "main").update(values)
            else:
                for s in range(n_steps):
                    acc(mode, f"step{s}").update({k: v[:, s] for k, v in values.items()})
                acc(mode, "oracle").update({k: v.max(axis=1) for k, v in values.items()})

        if aggregate_fn is not None:
            agg = tf.convert_to_tensor(aggregate_fn(batch))
            if agg.shape.rank != 2:
                raise ValueError(f"aggregate_fn must return (B, N), got shape {agg.shape}")
            agg_mode = _batch_metrics(agg, targets, history, modes, ks, num_items)
            for mode in modes:
                acc(mode, "aggregate").update({k: v.numpy() for k, v in agg_mode[mode].items()})

        seen += 1
        if bar is not None:
            key = "main" if rank == 2 else f"step{n_steps - 1}"
            shown = [
                (name, accs[m][key].result()[f"ndcg@{show_k}"])
                for name, m in zip(shown_names, modes)
            ]
            bar.update(seen, values=shown, finalize=False)
    if bar is not None:
        bar.update(seen, finalize=True)
        sys.stdout.flush()

    if n_steps is None:
        raise ValueError("the dataset yielded no batches")

    results: Dict[str, dict] = {}
    per_instance: Dict[str, dict] = {}
    for mode in modes:
        if n_steps == 0:
            results[mode] = accs[mode]["main"].result()
            if keep_per_instance:
                per_instance[mode] = accs[mode]["main"].per_instance()
            extra = [k for k in accs[mode] if k != "main"]
        else:
            results[mode] = {}
            per_instance[mode] = {}
            extra = [f"step{s}" for s in range(n_steps)] + ["oracle"]
            extra += [k for k in accs[mode] if k == "aggregate"]
        for key in extra:
            results[mode][key] = accs[mode][key].result()
            if keep_per_instance:
                per_instance[mode][key] = accs[mode][key].per_instance()
    if keep_per_instance:
        return results, per_instance
    return results
