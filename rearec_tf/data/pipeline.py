"""tf.data input pipelines for training and evaluation.

Conventions: item index 0 is padding; sequences are LEFT-padded with the newest item in
the last slot; every tensor is int32.

Memory is bounded by the data: the pipelines hold the concatenated item array plus
per-sample (start, end) offsets and gather the padded windows batch by batch inside a
batched ``map``; no ``num_samples x max_len`` array and nothing of size
``num_users x num_items`` is ever built.

Train samples (``mode``):

``prefix``  one sample per target position ``t >= 1`` of each train sequence ``s``:
            ``item_ids`` = ``s[:t]`` (last ``max_len`` items, left-padded), ``target`` =
            ``s[t]`` (the authors' release).
``all``     one sample per user with >= 2 train items, from the last ``max_len + 1``
            items ``w``: ``item_ids`` = ``w[:-1]``, ``targets`` = ``w[1:]``, both
            left-padded with 0 (0 = no loss at that position).

Length buckets (``buckets=(8, 16, 32, 50)``, see :func:`default_buckets`): samples are
grouped by their number of real items into the smallest bucket width that holds them,
batches are formed within a bucket (random order inside it, batch order shuffled) and
each batch is only as wide as its bucket. Left padding and position ids counted from the
oldest real item make the trimmed batch compute exactly what the full-width batch would
for every real position, at a fraction of the cost on short-sequence data (Beauty's
prefixes average ~5 real items in 50 slots). Evaluation batches are bucketed the same
way (``index`` gives each instance's position in the evaluation set).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

import rearec_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow)
import tensorflow as tf

from rearec_tf.data.errors import DataError
from rearec_tf.data.preprocess import EvalSet, SplitData

MODES = ("prefix", "all")


def _flatten(seqs: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated int32 items and per-sequence [start, end) offsets (int64)."""
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    ends = np.cumsum(lens)
    starts = ends - lens
    flat = (np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs])
            if len(seqs) else np.zeros(0, np.int32))
    return flat.astype(np.int32, copy=False), starts, ends


def _prefix_samples(split: SplitData) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat, starts, ends = _flatten(split.train)
    lens = ends - starts
    n_per = np.maximum(lens - 1, 0)
    # target positions: starts[u] + t for t in 1..len-1
    user_of = np.repeat(np.arange(len(lens)), n_per)
    first = np.cumsum(n_per) - n_per
    t = np.arange(int(n_per.sum()), dtype=np.int64) - np.repeat(first, n_per) + 1
    tgt_pos = starts[user_of] + t
    return flat, starts[user_of], tgt_pos


def _all_samples(split: SplitData, max_len: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat, starts, ends = _flatten(split.train)
    ok = (ends - starts) >= 2
    starts, ends = starts[ok], ends[ok]
    return flat, np.maximum(starts, ends - (max_len + 1)), ends


def num_train_samples(split: SplitData, mode: str = "prefix") -> int:
    """Number of training samples per epoch of :func:`train_dataset`."""
    if mode not in MODES:
        raise DataError(f"mode={mode!r}; choose one of {MODES}")
    lens = np.fromiter((len(s) for s in split.train), dtype=np.int64, count=len(split.train))
    if mode == "prefix":
        return int(np.maximum(lens - 1, 0).sum())
    return int((lens >= 2).sum())


def default_buckets(max_len: int) -> Tuple[int, ...]:
    """Bucket widths ``8, 16, 32, ...`` below ``max_len``, then ``max_len``."""
    widths, w = [], 8
    while w < max_len:
        widths.append(w)
        w *= 2
    return tuple(widths) + (int(max_len),)


def _bucketed_batches(lengths: np.ndarray, widths: Sequence[int], batch_size: int,
                      shuffle: bool, seed: int, epoch: Optional[int],
                      drop_remainder: bool) -> tf.data.Dataset:
    """Batches ``(indices (b,), width ())`` grouped by length bucket.

    With ``shuffle``, each iteration of the dataset draws a new arrangement determined by
    ``(seed, epoch)``, where ``epoch`` counts iterations from the given value (0 if None).
    """
    widths = np.asarray(sorted(set(int(w) for w in widths)), np.int64)
    bucket = np.searchsorted(widths, np.minimum(lengths, widths[-1]), side="left")
    members = [np.flatnonzero(bucket == b) for b in range(len(widths))]
    state = {"epoch": 0 if epoch is None else int(epoch)}

    def arrangement():
        rng = np.random.default_rng([seed, state["epoch"]])
        if epoch is None:
            state["epoch"] += 1
        out = []
        for b, idx in enumerate(members):
            if shuffle:
                idx = rng.permutation(idx)
            stop = len(idx) - len(idx) % batch_size if drop_remainder else len(idx)
            out += [(idx[i:i + batch_size], widths[b]) for i in range(0, stop, batch_size)]
        order = rng.permutation(len(out)) if shuffle else np.arange(len(out))
        for i in order:
            yield out[i][0].astype(np.int64), np.int64(out[i][1])

    per_bucket = [len(m) // batch_size if drop_remainder else -(-len(m) // batch_size)
                  for m in members]
    ds = tf.data.Dataset.from_generator(
        arrangement, output_signature=(tf.TensorSpec([None], tf.int64),
                                       tf.TensorSpec([], tf.int64)))
    # Known length: Keras progress bars show "step/total" and ETA.
    return ds.apply(tf.data.experimental.assert_cardinality(int(sum(per_bucket))))


def _window(flat: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, length) -> tf.Tensor:
    """(B, length) left-padded windows ``flat[max(lo, hi - length):hi]``."""
    length = tf.cast(length, tf.int64)
    pos = hi[:, None] - length + tf.range(length, dtype=tf.int64)[None, :]
    valid = pos >= lo[:, None]
    vals = tf.gather(flat, tf.maximum(pos, 0))
    return tf.where(valid, vals, tf.zeros_like(vals))


def _index_batches(n: int, batch_size: int, shuffle: bool, seed: int, epoch: Optional[int],
                   drop_remainder: bool) -> tf.data.Dataset:
    """Batches of sample indices (int64, shape (b,)), a fresh permutation per epoch."""
    nb = n // batch_size if drop_remainder else -(-n // batch_size)
    if not shuffle:
        return tf.data.Dataset.range(n).batch(batch_size, drop_remainder=drop_remainder)

    def batches(epoch_seed: tf.Tensor) -> tf.data.Dataset:
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64),
            seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch_seed, tf.int64)]))
        return tf.data.Dataset.range(nb).map(
            lambda b: perm[b * batch_size:tf.minimum((b + 1) * batch_size, n)])

    if epoch is not None:
        return batches(tf.constant(epoch, tf.int64))
    # A new, seed-determined permutation each time the dataset is iterated.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return seeds.flat_map(batches)


def train_dataset(split: SplitData, max_len: int, batch_size: int, mode: str = "prefix",
                  seed: int = 0, shuffle: bool = True, drop_remainder: bool = False,
                  epoch: Optional[int] = None,
                  buckets: Optional[Sequence[int]] = None) -> tf.data.Dataset:
    """Training batches (dicts of int32 tensors), see the module docstring.

    ``prefix``: ``{"item_ids": (B, max_len), "target": (B,)}``; ``all``:
    ``{"item_ids": (B, max_len), "targets": (B, max_len)}``.

    Shuffling is a full permutation of the samples, determined by ``seed``: iterating the
    dataset again gives a new permutation (the sequence of permutations is the same in
    every run with the same seed and TF global seed, ``tf.random.set_seed``). ``epoch=e``
    instead fixes the permutation to the one
    determined by ``(seed, e)`` (for resuming at epoch e).

    ``buckets``: length-bucket widths (see the module docstring); batches are then
    ``(B, width)`` with ``width <= max_len`` and the last bucket must be ``max_len``.
    """
    if mode not in MODES:
        raise DataError(f"mode={mode!r}; choose one of {MODES}")
    if max_len < 1 or batch_size < 1:
        raise DataError(f"max_len={max_len} and batch_size={batch_size} must be >= 1")
    L = int(max_len)
    if mode == "prefix":
        flat, lo, hi = _prefix_samples(split)
    else:
        flat, lo, hi = _all_samples(split, L)
    n = int(hi.shape[0])
    if n == 0:
        raise DataError(f"no training samples for mode={mode!r}: every train sequence has "
                        "fewer than 2 items")
    flat_t = tf.constant(np.append(flat, np.int32(0)), tf.int32)  # +0 sentinel
    lo_t = tf.constant(lo, tf.int64)
    hi_t = tf.constant(hi, tf.int64)

    if mode == "prefix":
        def gather(idx: tf.Tensor, width=L) -> Dict[str, tf.Tensor]:
            lo_b, hi_b = tf.gather(lo_t, idx), tf.gather(hi_t, idx)
            return {"item_ids": _window(flat_t, lo_b, hi_b, width),
                    "target": tf.gather(flat_t, hi_b)}
    else:
        def gather(idx: tf.Tensor, width=L) -> Dict[str, tf.Tensor]:
            lo_b, hi_b = tf.gather(lo_t, idx), tf.gather(hi_t, idx)
            return {"item_ids": _window(flat_t, lo_b, hi_b - 1, width),
                    "targets": _window(flat_t, lo_b + 1, hi_b, width)}

    if buckets:
        _check_buckets(buckets, L)
        lengths = (hi - lo) if mode == "prefix" else (hi - lo - 1)
        ds = _bucketed_batches(lengths, buckets, batch_size, shuffle, seed, epoch,
                               drop_remainder)
    else:
        ds = _index_batches(n, batch_size, shuffle, seed, epoch, drop_remainder)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_buckets(buckets: Sequence[int], max_len: int) -> None:
    if max(buckets) != max_len or min(buckets) < 1:
        raise DataError(f"buckets={tuple(buckets)} must be positive widths whose largest is "
                        f"max_len={max_len}")


def eval_dataset(evalset: EvalSet, max_len: int, batch_size: int,
                 buckets: Optional[Sequence[int]] = None) -> tf.data.Dataset:
    """Evaluation batches, dicts of int32 tensors, no shuffle.

    ``item_ids`` (B, max_len): last ``max_len`` history items, left-padded;
    ``target`` (B,); ``history`` (B, M): ALL history items in chronological order,
    right-padded with 0, M = longest history in the batch (for masking seen items);
    ``index`` (B,): position of each instance in ``evalset``. Without ``buckets`` the
    batches follow instance order; with ``buckets`` they are grouped by length (bucket by
    bucket, instance order inside) and ``item_ids`` is only as wide as the bucket.
    """
    if max_len < 1 or batch_size < 1:
        raise DataError(f"max_len={max_len} and batch_size={batch_size} must be >= 1")
    L = int(max_len)
    flat, lo, hi = _flatten(evalset.histories)
    flat_t = tf.constant(np.append(flat, np.int32(0)), tf.int32)  # +0 sentinel
    lo_t = tf.constant(lo, tf.int64)
    hi_t = tf.constant(hi, tf.int64)
    tgt_t = tf.constant(np.asarray(evalset.targets, np.int32), tf.int32)

    def gather(idx: tf.Tensor, width=L) -> Dict[str, tf.Tensor]:
        lo_b, hi_b = tf.gather(lo_t, idx), tf.gather(hi_t, idx)
        lens = hi_b - lo_b
        m = tf.reduce_max(tf.concat([lens, tf.zeros([1], tf.int64)], 0))
        pos = lo_b[:, None] + tf.range(m, dtype=tf.int64)[None, :]
        valid = pos < hi_b[:, None]
        vals = tf.gather(flat_t, tf.where(valid, pos, tf.zeros_like(pos)))
        return {"item_ids": _window(flat_t, lo_b, hi_b, width),
                "target": tf.gather(tgt_t, idx),
                "history": tf.where(valid, vals, tf.zeros_like(vals)),
                "index": tf.cast(idx, tf.int32)}

    if buckets:
        _check_buckets(buckets, L)
        ds = _bucketed_batches(hi - lo, buckets, batch_size, False, 0, 0, False)
    else:
        ds = tf.data.Dataset.range(len(evalset)).batch(batch_size)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
