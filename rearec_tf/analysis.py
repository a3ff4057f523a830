"""The paper's analyses of a trained ReaRec model (SPEC §7, "analyses worth reproducing").

::

    from rearec_tf import analysis
    from rearec_tf.run_dir import load_run
    from rearec_tf.data import prepare

    config, vocab, model = load_run("runs/beauty-prl")
    data = prepare(config)
    res = analysis.step_metrics(model, config, data.test)        # r0..rK', aggregate, oracle
    base = analysis.step_metrics(base_model, base_config, data.test)
    cmp = analysis.compare_groups(base["per_instance"]["masked"]["aggregate"],
                                  res["per_instance"]["masked"]["aggregate"],
                                  data.test, data.item_counts)
    sweep = analysis.steps_sweep(model, config, data.test, max_steps=5)
    analysis.plot_step_metrics(res, "steps.png")
    analysis.plot_group_gains({"PRL": cmp}, "length.png", grouping="length")
    analysis.plot_steps_sweep({"PRL": sweep}, "sweep.png")

What is computed
----------------

* :func:`step_metrics` — full-ranking metrics (both masking modes) of every reasoning
  state ``r0 .. rK'`` scored on its own, of the method's prediction (``aggregate``: ERL the
  mean of the states, PRL the last one, base ``r0``) and the **oracle** ceiling (per test
  instance and per metric the best step; SPEC §7/§8). Per-instance arrays are returned in
  :class:`EvalSet` order (the length-bucketed batches are put back in order with their
  ``index``), which is what the group analyses consume.
* :func:`group_metrics` / :func:`compare_groups` — metrics and relative gains by
  **user sequence-length group** and by **target-item popularity group**:

  - length = number of items in the instance's history (all of them, not only the last
    ``max_len``). Default fixed bins ``[1-4], [5-9], [10-19], [20+]``
    (:data:`LENGTH_BINS`); ``length_bins="quantile"`` gives ``n_length_groups`` groups at
    the quantiles of the history lengths (ties kept in one group, so sizes are only
    approximately equal and duplicate edges merge groups).
  - popularity = training frequency of the target item (``item_counts[target]``, the
    number of training interactions with it; 0 = never seen in training). Default
    ``popularity_scheme="equal"``: instances ordered from tail to head by
    ``(count, item index, instance position)`` and cut into ``n_popularity_groups``
    equal-size groups (``numpy.array_split``: sizes differ by at most one; an item whose
    count straddles a boundary can land in two neighbouring groups). ``"quantile"``: count
    thresholds at the quantiles of the targets' counts; an item always falls in one group
    and duplicate thresholds merge groups.

  Relative gain of a group = ``method / base - 1`` (in %), ``None`` when the base value
  is 0.
* :func:`steps_sweep` — quality of the method's prediction against the number of
  reasoning steps used at inference, ``K' = 0 .. max_steps`` (for a model trained with
  K = 2 the paper reports "overthinking" beyond ~2 steps). One reasoning pass with
  ``max_steps`` serves every ``K'``: step ``k`` only attends to the items and the earlier
  steps (SPEC §3), so ``r0 .. rK'`` of a longer pass equal those of a ``K'`` pass, and
  the aggregate of ``K'`` is ``objective.aggregate(R[:, :K'+1])``.
* ``plot_*`` — PNG figures (matplotlib, Agg backend).
"""
from __future__ import annotations

import math
import os
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

import rearec_tf._env  # noqa: F401  (before tensorflow)
import tensorflow as tf

from rearec_tf.metrics.ranking import MODES, evaluate_full_ranking

__all__ = [
    "LENGTH_BINS", "GROUP_METRICS", "step_metrics", "steps_sweep", "length_groups",
    "popularity_groups", "group_metrics", "compare_groups", "jsonable",
    "plot_step_metrics", "plot_group_gains", "plot_steps_sweep",
]

LENGTH_BINS: Tuple[Tuple[int, Optional[int]], ...] = ((1, 4), (5, 9), (10, 19), (20, None))
"""Default history-length bins (inclusive; ``None`` = no upper bound). Length-0 histories
(possible with a timestamp split) fall in the first bin if it starts at 0, else are
reported in a ``0`` group of their own."""
GROUP_METRICS: Tuple[str, ...] = ("ndcg@20", "recall@20")
ANALYSIS_KS: Tuple[int, ...] = (5, 10, 20, 50)


# ------------------------------------------------------------------------ scoring
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled(model, kind: str, steps: int):
    """A ``tf.function`` over item_ids ``(B, W)`` of any width (length buckets)."""
    fns = _COMPILED.setdefault(model, {})
    key = (kind, int(steps))
    if key in fns:
        return fns[key]
    k = int(steps)
    if kind == "per_step":
        def fn(item_ids):
            R = model.reason(item_ids, steps=k, training=False)
            return model.score_items(R), model.score_items(model.objective.aggregate(R))
    elif kind == "sweep":
        def fn(item_ids):
            R = model.reason(item_ids, steps=k, training=False)
            aggs = [model.objective.aggregate(R[:, :j + 1]) for j in range(k + 1)]
            return model.score_items(tf.stack(aggs, axis=1))
    else:  # pragma: no cover
        raise ValueError(kind)
    spec = tf.TensorSpec([None, None], tf.int32, name="item_ids")
    fns[key] = tf.function(fn, input_signature=[spec], reduce_retracing=True)
    return fns[key]


def _eval_ds(evalset, config, batch_size: int, buckets: bool):
    from rearec_tf.data.pipeline import default_buckets, eval_dataset

    b = default_buckets(config.max_len) if buckets else None
    return eval_dataset(evalset, config.max_len, batch_size, buckets=b)


def _check_steps(config, steps: int) -> int:
    steps = int(steps)
    if not 0 <= steps <= config.max_reason_steps:
        raise ValueError(f"steps={steps} out of range: the model has reasoning positions for "
                         f"0..{config.max_reason_steps} steps (max_reason_steps)")
    return steps


def _reorder(per_instance: Dict[str, Any], order: np.ndarray, n: int) -> Dict[str, Any]:
    """Put batch-order arrays back in EvalSet order (``order[i]`` = EvalSet position of
    the i-th evaluated instance)."""
    if isinstance(per_instance, dict):
        return {k: _reorder(v, order, n) for k, v in per_instance.items()}
    arr = np.asarray(per_instance)
    out = np.empty((n,) + arr.shape[1:], arr.dtype)
    out[order] = arr
    return out


def step_metrics(model, config, evalset, steps: Optional[int] = None, batch_size: int = 1024,
                 modes: Sequence[str] = MODES, ks: Sequence[int] = ANALYSIS_KS,
                 buckets: bool = True, progress: bool = False) -> Dict[str, Any]:
    """Metrics of every reasoning step, the method's aggregate and the oracle.

    Args:
      model: a :class:`ReaRecModel` (e.g. from :func:`rearec_tf.run_dir.load_run`).
      config: its :class:`Config`.
      evalset: an :class:`EvalSet` (``prepare(config).test`` or ``.valid``).
      steps: ``K'`` reasoning steps at inference (default: the trained K; 0 for base).
      batch_size: evaluation batch size (a batch materialises ``B x (K'+1) x N`` scores).
      buckets: evaluate in length buckets (same numbers, faster on short histories).

    Returns a dict::

        {"method", "steps", "trained_steps", "count",
         "metrics":      {mode: {"step0": {...}, .., "stepK'": {...},
                                 "aggregate": {...}, "oracle": {...}}},
         "per_instance": {mode: {same keys: {metric: float64 array (n,)}}},  # EvalSet order
         "best_step_share": {mode: [fraction of instances whose NDCG@20 is best at step k
                                    alone (strictly), ...]}}

    ``metrics[mode][key]`` holds ``ndcg@K``, ``recall@K`` for ``ks``, ``mrr`` and ``count``.
    """
    K = _check_steps(config, config.train_steps if steps is None else steps)
    fn = _compiled(model, "per_step", K)
    indices: List[np.ndarray] = []
    cache: Dict[str, Any] = {}

    def score_fn(batch):
        indices.append(np.asarray(batch["index"]))
        per_step, agg = fn(tf.cast(batch["item_ids"], tf.int32))
        cache["agg"] = agg
        return per_step

    def aggregate_fn(batch):
        return cache.pop("agg")

    ds = _eval_ds(evalset, config, batch_size, buckets)
    results, per_inst = evaluate_full_ranking(
        score_fn, ds, ks=ks, modes=modes, progress=progress, aggregate_fn=aggregate_fn,
        num_items=int(model.num_items) + 1, keep_per_instance=True)
    order = np.concatenate(indices).astype(np.int64)
    n = len(evalset)
    if order.shape[0] != n or np.unique(order).shape[0] != n:
        raise RuntimeError(f"evaluation visited {order.shape[0]} instances "
                           f"({np.unique(order).shape[0]} distinct) of {n}")
    per_inst = _reorder(per_inst, order, n)
    share = {}
    for mode in modes:
        if "ndcg@20" not in per_inst[mode]["step0"]:
            continue
        mat = np.stack([per_inst[mode][f"step{k}"]["ndcg@20"] for k in range(K + 1)], 1)
        best = mat.max(axis=1, keepdims=True)
        unique_best = (mat == best) & ((mat == best).sum(axis=1, keepdims=True) == 1)
        share[mode] = [float(x) for x in unique_best.mean(axis=0)]
    return {"method": config.method, "steps": K, "trained_steps": config.train_steps,
            "count": n, "metrics": results, "per_instance": per_inst,
            "best_step_share": share}


def steps_sweep(model, config, evalset, max_steps: int = 5, batch_size: int = 1024,
                modes: Sequence[str] = MODES, ks: Sequence[int] = ANALYSIS_KS,
                buckets: bool = True, progress: bool = False) -> Dict[str, Any]:
    """Quality of the method's prediction for ``K' = 0 .. max_steps`` inference steps.

    Returns ``{"method", "trained_steps", "steps": [0..max_steps], "count",
    "metrics": {"0": {mode: {...}}, "1": ..., ...}}`` (the layout of
    ``python -m rearec_tf.evaluate --steps-sweep``). For ``method='base'`` every ``K'``
    scores ``r0`` (the base prediction ignores reasoning states), so the curve is flat.
    """
    M = _check_steps(config, max_steps)
    fn = _compiled(model, "sweep", M)
    ds = _eval_ds(evalset, config, batch_size, buckets)
    results = evaluate_full_ranking(lambda b: fn(tf.cast(b["item_ids"], tf.int32)), ds,
                                    ks=ks, modes=modes, progress=progress,
                                    num_items=int(model.num_items) + 1)
    metrics = {str(k): {mode: results[mode][f"step{k}"] for mode in modes}
               for k in range(M + 1)}
    return {"method": config.method, "trained_steps": config.train_steps,
            "steps": list(range(M + 1)), "count": len(evalset), "metrics": metrics}


def jsonable(result: Mapping[str, Any]) -> Dict[str, Any]:
    """``result`` without its per-instance arrays (for JSON files and reports)."""
    return {k: v for k, v in result.items() if k != "per_instance"}


# ------------------------------------------------------------------------- groups
def _length_label(lo: int, hi: Optional[int]) -> str:
    if hi is None:
        return f"{lo}+"
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def length_groups(evalset, length_bins: Union[str, Sequence] = LENGTH_BINS,
                  n_length_groups: int = 4) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Group index of every instance by history length, and the group descriptions.

    ``length_bins``: a sequence of inclusive ``(lo, hi)`` bins (``hi=None`` = unbounded),
    or ``"quantile"`` for ``n_length_groups`` groups at the length quantiles.
    Returns ``(group (n,) int, [{"group", "lo", "hi"}])``; an instance outside every bin
    gets ``-1`` (not reported).
    """
    lens = np.fromiter((len(h) for h in evalset.histories), np.int64, count=len(evalset))
    if isinstance(length_bins, str):
        if length_bins != "quantile":
            raise ValueError(f"length_bins={length_bins!r}: a list of (lo, hi) or 'quantile'")
        qs = np.quantile(lens, np.linspace(0, 1, n_length_groups + 1)[1:-1], method="lower") \
            if len(lens) else np.zeros(0)
        edges = sorted(set(int(q) for q in qs))  # group g: (edges[g-1], edges[g]]
        bins, lo = [], int(lens.min()) if len(lens) else 0
        for e in edges:
            if e >= lo:
                bins.append((lo, e))
                lo = e + 1
        bins.append((lo, None))
    else:
        bins = [(int(lo), None if hi is None else int(hi)) for lo, hi in length_bins]
        if not bins:
            raise ValueError("length_bins is empty")
        if len(lens) and lens.min() < bins[0][0]:
            bins = [(0, bins[0][0] - 1)] + bins
    group = np.full(len(lens), -1, np.int64)
    for g, (lo, hi) in enumerate(bins):
        sel = (lens >= lo) & (lens <= (hi if hi is not None else np.iinfo(np.int64).max))
        group[sel & (group < 0)] = g
    desc = [{"group": _length_label(lo, hi), "lo": lo, "hi": hi} for lo, hi in bins]
    return group, desc


def popularity_groups(evalset, item_counts: np.ndarray, n_groups: int = 5,
                      scheme: str = "equal") -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Group index of every instance by its target's training frequency, tail to head.

    ``scheme="equal"``: equal-size groups (``array_split`` of the instances ordered by
    ``(count, item, position)``); ``"quantile"``: count thresholds at the quantiles (ties
    kept together). Returns ``(group (n,), [{"group", "min_count", "max_count",
    "items"}])``; group 0 is the tail (least popular targets).
    """
    targets = np.asarray(evalset.targets, np.int64)
    counts = np.asarray(item_counts, np.int64)[targets]
    n = len(targets)
    group = np.full(n, -1, np.int64)
    if scheme == "equal":
        order = np.lexsort((np.arange(n), targets, counts))
        for g, idx in enumerate(np.array_split(order, n_groups)):
            group[idx] = g
        n_made = n_groups
    elif scheme == "quantile":
        qs = np.quantile(counts, np.linspace(0, 1, n_groups + 1)[1:-1], method="lower") \
            if n else np.zeros(0)
        edges = sorted(set(int(q) for q in qs))
        if edges and edges[-1] >= counts.max(initial=0):
            edges = edges[:-1]  # last group would be empty
        group = np.searchsorted(np.asarray(edges, np.int64), counts, side="left")
        n_made = len(edges) + 1
    else:
        raise ValueError(f"popularity scheme={scheme!r}: use 'equal' or 'quantile'")
    desc = []
    for g in range(n_made):
        sel = group == g
        c = counts[sel]
        name = f"G{g + 1}"
        if g == 0:
            name += " (tail)"
        elif g == n_made - 1:
            name += " (head)"
        desc.append({"group": name,
                     "min_count": int(c.min()) if c.size else None,
                     "max_count": int(c.max()) if c.size else None,
                     "items": int(np.unique(targets[sel]).size)})
    return group, desc


def _summarise(values: Mapping[str, np.ndarray], group: np.ndarray,
               desc: List[Dict[str, Any]], metrics: Sequence[str]) -> List[Dict[str, Any]]:
    rows = []
    for g, d in enumerate(desc):
        sel = group == g
        row = dict(d)
        row["count"] = int(sel.sum())
        for m in metrics:
            v = np.asarray(values[m], np.float64)
            row[m] = float(v[sel].mean()) if sel.any() else float("nan")
        rows.append(row)
    return rows


def group_metrics(per_instance: Mapping[str, np.ndarray], evalset, item_counts: np.ndarray,
                  metrics: Sequence[str] = GROUP_METRICS,
                  length_bins: Union[str, Sequence] = LENGTH_BINS, n_length_groups: int = 4,
                  n_popularity_groups: int = 5, popularity_scheme: str = "equal"
                  ) -> Dict[str, List[Dict[str, Any]]]:
    """Per-group means of per-instance metrics (EvalSet order, e.g.
    ``step_metrics(...)["per_instance"]["masked"]["aggregate"]``).

    Returns ``{"length": [row...], "popularity": [row...]}``; each row has the group's
    description (``group`` label, bounds), ``count`` and one value per metric.
    """
    n = len(evalset)
    for m in metrics:
        if np.asarray(per_instance[m]).shape != (n,):
            raise ValueError(f"per-instance {m!r} has shape {np.asarray(per_instance[m]).shape}"
                             f", expected ({n},) in EvalSet order")
    lg, ldesc = length_groups(evalset, length_bins, n_length_groups)
    pg, pdesc = popularity_groups(evalset, item_counts, n_popularity_groups, popularity_scheme)
    return {"length": _summarise(per_instance, lg, ldesc, metrics),
            "popularity": _summarise(per_instance, pg, pdesc, metrics)}


def _gain(base: float, method: float) -> Optional[float]:
    if not (math.isfinite(base) and math.isfinite(method)) or base == 0:
        return None
    return 100.0 * (method / base - 1.0)


def compare_groups(base_per_instance: Mapping[str, np.ndarray],
                   method_per_instance: Mapping[str, np.ndarray], evalset,
                   item_counts: np.ndarray, metrics: Sequence[str] = GROUP_METRICS,
                   **group_kwargs) -> Dict[str, List[Dict[str, Any]]]:
    """Per-group base value, method value and relative gain (%) of each metric.

    Rows: ``{"group", bounds..., "count", "base": {m: v}, "method": {m: v},
    "gain": {m: % or None}}`` under ``"length"`` and ``"popularity"``, plus an
    ``"overall"`` row (all instances).
    """
    b = group_metrics(base_per_instance, evalset, item_counts, metrics, **group_kwargs)
    m = group_metrics(method_per_instance, evalset, item_counts, metrics, **group_kwargs)
    out: Dict[str, Any] = {}
    for key in ("length", "popularity"):
        rows = []
        for rb, rm in zip(b[key], m[key]):
            row = {k: v for k, v in rb.items() if k not in metrics}
            row["base"] = {x: rb[x] for x in metrics}
            row["method"] = {x: rm[x] for x in metrics}
            row["gain"] = {x: _gain(rb[x], rm[x]) for x in metrics}
            rows.append(row)
        out[key] = rows
    base_all = {x: float(np.mean(base_per_instance[x])) for x in metrics}
    meth_all = {x: float(np.mean(method_per_instance[x])) for x in metrics}
    out["overall"] = {"count": len(evalset), "base": base_all, "method": meth_all,
                      "gain": {x: _gain(base_all[x], meth_all[x]) for x in metrics}}
    return out


# -------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _label(metric: str) -> str:
    name, _, k = metric.partition("@")
    return {"ndcg": "NDCG", "recall": "Recall", "mrr": "MRR"}.get(name, name) + \
        (f"@{k}" if k else "")


def _save(fig, path: str) -> str:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_step_metrics(result: Mapping[str, Any], path: str, mode: str = "masked",
                      metrics: Sequence[str] = GROUP_METRICS, title: Optional[str] = None) -> str:
    """Bars of every step ``r0..rK'`` and of the method's prediction, with the oracle
    ceiling as a dashed line; one panel per metric."""
    plt = _pyplot()
    res = result["metrics"][mode]
    K = int(result["steps"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    labels = [f"r{k}" for k in range(K + 1)] + ["method"]
    colors = ["#8fb3d9"] * (K + 1) + ["#e07b39"]
    for ax, m in zip(axes[0], metrics):
        vals = [res[f"step{k}"][m] for k in range(K + 1)] + [res["aggregate"][m]]
        bars = ax.bar(labels, vals, color=colors, edgecolor="black", linewidth=0.5)
        ax.axhline(res["oracle"][m], color="#2a7f2a", linestyle="--", linewidth=1.5,
                   label=f"oracle (best step per instance) {res['oracle'][m]:.4f}")
        for bar, v in zip(bars, vals):
            ax.annotate(f"{v:.4f}", (bar.get_x() + bar.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, max(vals + [res["oracle"][m]]) * 1.25 or 1)
        ax.set_xlabel("reasoning state")
        ax.set_ylabel(f"{_label(m)} (test, {mode})")
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle((title or f"{result['method'].upper()}: per-step metrics, K'={K}") +
                 "\n(r_k scored alone; 'method' = the method's prediction)", fontsize=10)
    return _save(fig, path)


def plot_group_gains(comparisons: Mapping[str, Mapping[str, Any]], path: str,
                     grouping: str = "length", metric: str = "ndcg@20",
                     title: Optional[str] = None) -> str:
    """Grouped bars of the relative gain (%) over the base model per group; one bar
    colour per method (``comparisons``: label -> :func:`compare_groups` result). Group
    sizes are shown under the group labels."""
    plt = _pyplot()
    if grouping not in ("length", "popularity"):
        raise ValueError(f"grouping={grouping!r}: 'length' or 'popularity'")
    labels = list(comparisons)
    first = next(iter(comparisons.values()))[grouping]
    def tick(r):
        if grouping == "popularity" and r.get("min_count") is not None:
            return f"{r['group']}\ncount {r['min_count']}-{r['max_count']}\n(n={r['count']})"
        return f"{r['group']}\n(n={r['count']})"

    groups = [tick(r) for r in first]
    x = np.arange(len(groups))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) + 2), 3.8))
    for i, lab in enumerate(labels):
        gains = [r["gain"][metric] for r in comparisons[lab][grouping]]
        vals = [g if g is not None else 0.0 for g in gains]
        bars = ax.bar(x + (i - (len(labels) - 1) / 2) * width, vals, width, label=lab,
                      edgecolor="black", linewidth=0.5)
        for bar, g in zip(bars, gains):
            txt = "n/a" if g is None else f"{g:+.1f}%"
            ax.annotate(txt, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom" if bar.get_height() >= 0 else "top",
                        fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, fontsize=8)
    what = ("history length (items before the target)" if grouping == "length"
            else "target popularity group (training frequency, tail to head)")
    ax.set_xlabel(what)
    ax.set_ylabel(f"relative gain in {_label(metric)} over base (%)")
    ax.legend(fontsize=8)
    ax.set_title(title or f"Gain by {grouping} group", fontsize=10)
    return _save(fig, path)


def plot_steps_sweep(sweeps: Mapping[str, Mapping[str, Any]], path: str,
                     metric: str = "ndcg@20", mode: str = "masked",
                     base_value: Optional[float] = None, title: Optional[str] = None) -> str:
    """Quality of the method's prediction vs the number of inference steps ``K'``
    (``sweeps``: label -> :func:`steps_sweep` result); a marker at the trained K and,
    optionally, the base model as a dotted line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for lab, sw in sweeps.items():
        ks = [int(k) for k in sw["steps"]]
        vals = [sw["metrics"][str(k)][mode][metric] for k in ks]
        line, = ax.plot(ks, vals, marker="o", label=lab)
        K = sw.get("trained_steps")
        if K is not None and K in ks:
            ax.plot([K], [vals[ks.index(K)]], marker="*", markersize=14, color=line.get_color(),
                    linestyle="none", label=f"{lab}: trained K={K}")
    if base_value is not None:
        ax.axhline(base_value, color="grey", linestyle=":", label="base (SASRec)")
    ax.set_xlabel("inference reasoning steps K'")
    ax.set_ylabel(f"{_label(metric)} (test, {mode})")
    ax.set_xticks(sorted({int(k) for sw in sweeps.values() for k in sw["steps"]}))
    ax.legend(fontsize=8)
    ax.set_title(title or "Quality vs inference steps", fontsize=10)
    return _save(fig, path)
