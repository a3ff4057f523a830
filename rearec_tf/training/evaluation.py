"""Compiled scoring functions and full-ranking evaluation of a trained model."""
from __future__ import annotations

import logging
import weakref
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.metrics.ranking import DEFAULT_KS, MODES, evaluate_full_ranking


def metric_ks(select_metric: str, ks: Sequence[int] = DEFAULT_KS) -> Tuple[int, ...]:
    """``ks`` plus the cut-off of ``select_metric`` (e.g. ``ndcg@100`` adds 100)."""
    out = set(int(k) for k in ks)
    name = select_metric.strip().lower()
    if "@" in name:
        head, k = name.split("@", 1)
        if head not in ("ndcg", "recall") or not k.isdigit() or int(k) < 1:
            raise ValueError(f"select_metric={select_metric!r}: use ndcg@K, recall@K or mrr")
        out.add(int(k))
    elif name != "mrr":
        raise ValueError(f"select_metric={select_metric!r}: use ndcg@K, recall@K or mrr")
    return tuple(sorted(out))


class _SweepRetraceFilter(logging.Filter):
    """Hides TensorFlow's "triggered tf.function retracing" warning for the scoring
    functions below: a steps sweep legitimately compiles one function per K'."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("triggered tf.function retracing" in msg and "_compiled.<locals>" in msg)


tf.get_logger().addFilter(_SweepRetraceFilter())

# One compiled function per (model, kind, steps): creating them anew for every
# evaluation would retrace each time.
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled(model, kind: str, steps: Optional[int]):
    if steps is None:  # the trained K: share the function with an explicit K' = K
        steps = int(model.reasoner.steps)
    fns = _COMPILED.setdefault(model, {})
    key = (kind, steps)
    if key not in fns:
        if kind == "aggregate":
            def scores(item_ids):
                return model.score_items(model.user_embedding(item_ids, steps=steps,
                                                              training=False))
        else:
            def scores(item_ids):
                R = model.reason(item_ids, steps=steps, training=False)
                return model.score_items(R), model.score_items(model.objective.aggregate(R))
        # One trace serves every batch size and width (the last batch is smaller;
        # length-bucketed batches are only as wide as their bucket).
        spec = tf.TensorSpec([None, None], tf.int32, name="item_ids")
        fns[key] = tf.function(scores, input_signature=[spec], reduce_retracing=True)
    return fns[key]


def make_score_fn(model, steps: Optional[int] = None) -> Callable[[Dict[str, Any]], tf.Tensor]:
    """``batch -> (B, N+1)`` scores of the method's user embedding (ERL: mean of the
    steps, PRL: last step, base: r0) with ``steps`` reasoning steps (default: the trained
    K), compiled once per model and ``steps`` (a ``(None, None)`` input signature: no
    retracing for the smaller last batch or for length-bucketed batches)."""
    scores = _compiled(model, "aggregate", steps)
    return lambda batch: scores(tf.cast(batch["item_ids"], tf.int32))


def make_step_score_fns(model, steps: Optional[int] = None):
    """``(score_fn, aggregate_fn)`` for :func:`evaluate_full_ranking`'s per-step mode:
    ``score_fn`` gives ``(B, K'+1, N+1)`` scores of ``r0..rK'``, ``aggregate_fn`` the
    method's aggregate of the same reasoning pass (computed once per batch)."""

    scores = _compiled(model, "per_step", steps)
    cache: Dict[str, Any] = {}

    def score_fn(batch):
        per_step, agg = scores(tf.cast(batch["item_ids"], tf.int32))
        cache["batch"], cache["agg"] = batch, agg
        return per_step

    def aggregate_fn(batch):
        if cache.get("batch") is not batch:
            return scores(tf.cast(batch["item_ids"], tf.int32))[1]
        return cache.pop("agg")

    return score_fn, aggregate_fn


def evaluate_model(model, dataset, modes: Sequence[str] = MODES,
                   ks: Sequence[int] = DEFAULT_KS, steps: Optional[int] = None,
                   per_step: bool = False, num_items: Optional[int] = None,
                   progress: bool = False) -> Dict[str, Any]:
    """Full-ranking metrics of ``model`` on an eval ``dataset`` (see
    :func:`rearec_tf.data.pipeline.eval_dataset`); with ``per_step`` the result has
    ``step0..stepK'``, ``oracle`` and ``aggregate`` per mode."""
    if per_step:
        score_fn, aggregate_fn = make_step_score_fns(model, steps)
        return evaluate_full_ranking(score_fn, dataset, ks=ks, modes=modes, progress=progress,
                                     aggregate_fn=aggregate_fn, num_items=num_items)
    return evaluate_full_ranking(make_score_fn(model, steps), dataset, ks=ks, modes=modes,
                                 progress=progress, num_items=num_items)
