"""From an interaction log to train sequences and evaluation instances.

Order rules (deterministic: running twice gives identical indices):

* **Chronological order within a user**: stable sort by timestamp, ties broken by file
  order; without timestamps the file order.
* **User order**: order of first occurrence in the file.
* **Item vocabulary**: walk the users in user order and each user's interactions in
  chronological order; items get indices 1, 2, ... in order of first appearance in that
  walk (0 is padding). Only the interactions kept (after k-core and the split's
  too-short-user rule) are walked. For the S3-Rec files this reproduces the original
  integer ids (item ``"7"`` gets index 7).

Repeat interactions (the same item twice for a user, e.g. Yelp) are kept as they are.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rearec_tf.data.errors import DataError
from rearec_tf.data.readers import Interactions
from rearec_tf.data.vocabulary import Vocabulary

logger = logging.getLogger("rearec_tf.data")


@dataclass
class EvalSet:
    """Evaluation instances: predict ``targets[j]`` from ``histories[j]``."""

    histories: List[np.ndarray]
    """int32 item indices: ALL the user's items before the target, chronological."""
    targets: np.ndarray
    """int32 item index of each target, shape (n,)."""
    users: np.ndarray
    """int32 index into :attr:`SplitData.users` of each instance, shape (n,)."""

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass
class SplitData:
    vocab: Vocabulary
    users: List[str]
    """External user ids; ``train[u]`` is the training sequence of ``users[u]``."""
    train: List[np.ndarray]
    """int32 item indices per user, chronological: the training interactions."""
    valid: EvalSet
    test: EvalSet
    stats: Dict[str, object] = field(default_factory=dict)
    item_counts: Optional[np.ndarray] = None
    """Training-interaction count per item index, shape (vocab.size,), index 0 = 0."""

    def __post_init__(self) -> None:
        if self.item_counts is None:
            self.item_counts = _item_counts(self.train, self.vocab.size)

    @property
    def num_items(self) -> int:
        return self.vocab.num_items


def _item_counts(train: Sequence[np.ndarray], size: int) -> np.ndarray:
    flat = np.concatenate(list(train)) if len(train) else np.zeros(0, np.int32)
    counts = np.bincount(flat, minlength=size).astype(np.int64)
    counts[0] = 0
    return counts


# ------------------------------------------------------------------- chronology
def _chronological(inter: Interactions) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order, user codes in that order, user ids by first occurrence, offsets).

    ``inter.<col>[order]`` is grouped by user (user order = first occurrence in file) and
    chronological within user; user ``c`` spans ``offsets[c]:offsets[c + 1]``.
    """
    import pandas as pd

    codes, uniques = pd.factorize(inter.user)
    if inter.timestamp is None:
        order = np.argsort(codes, kind="stable")
    else:
        order = np.lexsort((inter.timestamp, codes))  # stable: ties keep file order
    counts = np.bincount(codes, minlength=len(uniques))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return order, codes[order], np.asarray(uniques, dtype=str), offsets


def build_sequences(inter: Interactions, return_timestamps: bool = False):
    """Per-user chronological item lists: ``{user: np.ndarray of item ids (str)}``.

    Users in order of first occurrence in the file; items sorted stably by timestamp
    (ties keep file order), or in file order without timestamps. With
    ``return_timestamps=True`` also returns ``{user: float64 timestamps}`` (or None).
    """
    order, _, users, offsets = _chronological(inter)
    items = inter.item[order]
    seqs = {u: items[offsets[c]:offsets[c + 1]] for c, u in enumerate(users)}
    if not return_timestamps:
        return seqs
    if inter.timestamp is None:
        return seqs, None
    ts = inter.timestamp[order]
    return seqs, {u: ts[offsets[c]:offsets[c + 1]] for c, u in enumerate(users)}


def first_appearance_order(sequences: Mapping[str, Sequence[str]]) -> Vocabulary:
    """The item vocabulary of the module's rule (first appearance, users in order)."""
    parts = [np.asarray(s, dtype=str) for s in sequences.values()]
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=str)
    return Vocabulary.from_sequence(flat)


# ---------------------------------------------------------------------- k-core
def k_core(inter: Interactions, k: int) -> Interactions:
    """Iteratively drop users and items with fewer than ``k`` interactions.

    Repeats until every remaining user and item has at least ``k`` interactions (repeat
    interactions count). ``k <= 1`` returns ``inter`` unchanged. Each round and the
    totals are logged.
    """
    if k <= 1:
        return inter
    import pandas as pd

    u, nu = pd.factorize(inter.user)
    i, ni = pd.factorize(inter.item)
    keep = np.ones(len(inter), dtype=bool)
    rnd = 0
    while True:
        uc = np.bincount(u[keep], minlength=len(nu))
        ic = np.bincount(i[keep], minlength=len(ni))
        new = keep & (uc[u] >= k) & (ic[i] >= k)
        removed = int(keep.sum() - new.sum())
        if removed == 0:
            break
        rnd += 1
        logger.info("k-core(%d) round %d: dropped %d interactions (users < %d: %d, "
                    "items < %d: %d)", k, rnd, removed, k, int(((uc > 0) & (uc < k)).sum()),
                    k, int(((ic > 0) & (ic < k)).sum()))
        keep = new
    out = inter.subset(keep)
    if len(out) == 0:
        raise DataError(f"{inter.source}: k-core filtering with k={k} removed every "
                        "interaction; use a smaller k_core")
    logger.info("k-core(%d) on %s: users %d -> %d, items %d -> %d, interactions %d -> %d",
                k, inter.source, len(nu), out.num_users, len(ni), out.num_items, len(inter),
                len(out))
    return out


# --------------------------------------------------------------------- splits
def _eval_set(histories: List[np.ndarray], targets: List[int], users: List[int]) -> EvalSet:
    return EvalSet(histories, np.asarray(targets, dtype=np.int32).reshape(-1),
                   np.asarray(users, dtype=np.int32).reshape(-1))


def _summary(split: SplitData, extra: Dict[str, object]) -> None:
    n_train = int(sum(len(s) for s in split.train))
    split.stats.update({
        "num_users": len(split.users),
        "num_items": split.vocab.num_items,
        "num_train_interactions": n_train,
        "num_valid": len(split.valid),
        "num_test": len(split.test),
    })
    split.stats.update(extra)
    logger.info("split %s", split.stats)


def leave_one_out(sequences: Mapping[str, Sequence[str]], min_len: int = 3,
                  strict: bool = False) -> SplitData:
    """Leave-one-out split of chronological per-user sequences (from :func:`build_sequences`).

    Per user ``s``: test target ``s[-1]`` with history ``s[:-1]``; valid target ``s[-2]``
    with history ``s[:-2]``; train sequence ``s[:-2]``. Users with fewer than ``min_len``
    (>= 3) interactions are skipped, counted in ``stats["skipped_short_users"]`` and
    logged (``strict=True`` raises instead).
    """
    if min_len < 3:
        raise ValueError(f"min_len={min_len}: leave-one-out needs >= 3 interactions per "
                         "user (1 train, 1 valid, 1 test)")
    users: List[str] = []
    parts: List[np.ndarray] = []
    short: List[str] = []
    for u, s in sequences.items():
        if len(s) < min_len:
            short.append(u)
            continue
        users.append(str(u))
        parts.append(np.asarray(s, dtype=str))
    if short:
        msg = (f"leave-one-out: {len(short)} user(s) have fewer than {min_len} interactions "
               f"(rule: each user needs 1 train, 1 valid and 1 test item); first: "
               f"{short[:5]}")
        if strict:
            raise DataError(msg + "; filter them (e.g. k_core=5) or pass strict=False to "
                            "skip them")
        logger.warning("%s; skipped", msg)
    if not users:
        raise DataError(f"leave-one-out: no user has >= {min_len} interactions")
    flat_str = np.concatenate(parts)
    vocab = Vocabulary.from_sequence(flat_str)
    flat = vocab.lookup(flat_str)
    ends = np.cumsum([len(p) for p in parts])
    starts = ends - np.array([len(p) for p in parts])
    train = [flat[a:b - 2] for a, b in zip(starts, ends)]
    valid = _eval_set(train, flat[ends - 2], list(range(len(users))))
    test = _eval_set([flat[a:b - 1] for a, b in zip(starts, ends)], flat[ends - 1],
                     list(range(len(users))))
    split = SplitData(vocab, users, train, valid, test, stats={"split": "loo"})
    _summary(split, {"num_interactions": int(flat.size), "skipped_short_users": len(short),
                     "min_len": min_len})
    return split


def timestamp_cutoffs(timestamps: np.ndarray, quantiles: Tuple[float, float]
                      ) -> Tuple[float, float]:
    """Global cutoffs: ``t_q`` = the timestamp at 0-based rank ``floor(q * n)`` of all n
    interactions sorted by time (so about a fraction q of the interactions lie before it;
    fewer when the cutoff timestamp is tied)."""
    q0, q1 = (float(q) for q in quantiles)
    if not 0.0 < q0 < q1 < 1.0:
        raise DataError(f"split_quantiles={quantiles}: need 0 < q_valid < q_test < 1")
    ts = np.sort(np.asarray(timestamps, dtype=np.float64))
    n = ts.size
    pick = lambda q: float(ts[min(int(np.floor(q * n)), n - 1)])  # noqa: E731
    return pick(q0), pick(q1)


def timestamp_split(inter: Interactions, quantiles: Tuple[float, float] = (0.8, 0.9)
                    ) -> SplitData:
    """Global temporal split at interaction-time quantiles (see :func:`timestamp_cutoffs`).

    Train sequences: each user's interactions with ``t < t_valid``. Valid instance: the
    user's first interaction with ``t_valid <= t < t_test``, history = all earlier ones.
    Test instance: the first interaction with ``t >= t_test``, history = all earlier ones
    (train and validation-window interactions). Users with no interaction in a window get
    no instance there; instances with an empty history are skipped and counted
    (``stats["skipped_empty_history_valid"/"_test"]``) and logged.
    """
    if inter.timestamp is None:
        raise DataError(f"{inter.source}: split='timestamp' needs timestamps, but this "
                        "log has none (formats pairs/sequences only keep the order); use "
                        "split='loo', or a format with a timestamp column")
    if len(inter) == 0:
        raise DataError(f"{inter.source}: no interactions")
    t_valid, t_test = timestamp_cutoffs(inter.timestamp, quantiles)
    order, codes, users, offsets = _chronological(inter)
    ts = inter.timestamp[order]
    vocab = Vocabulary.from_sequence(inter.item[order])
    flat = vocab.lookup(inter.item[order])
    n_users = len(users)
    n_before_valid = np.bincount(codes[ts < t_valid], minlength=n_users)
    n_before_test = np.bincount(codes[ts < t_test], minlength=n_users)
    train: List[np.ndarray] = []
    vh, vt, vu, th, tt, tu = [], [], [], [], [], []
    skip_v = skip_t = 0
    for c in range(n_users):
        a, b = int(offsets[c]), int(offsets[c + 1])
        nv, nt = int(n_before_valid[c]), int(n_before_test[c])
        train.append(flat[a:a + nv])
        if nv < nt:  # an interaction in [t_valid, t_test)
            if nv == 0:
                skip_v += 1
            else:
                vh.append(flat[a:a + nv]); vt.append(flat[a + nv]); vu.append(c)  # noqa: E702
        if a + nt < b:  # an interaction at or after t_test
            if nt == 0:
                skip_t += 1
            else:
                th.append(flat[a:a + nt]); tt.append(flat[a + nt]); tu.append(c)  # noqa: E702
    if skip_v or skip_t:
        logger.warning("timestamp split of %s: skipped %d valid and %d test instance(s) "
                       "with an empty history (rule: the target needs at least one earlier "
                       "interaction of the user)", inter.source, skip_v, skip_t)
    split = SplitData(vocab, [str(u) for u in users], train, _eval_set(vh, vt, vu),
                      _eval_set(th, tt, tu), stats={"split": "timestamp"})
    _summary(split, {"num_interactions": len(inter), "t_valid": t_valid, "t_test": t_test,
                     "quantiles": [float(q) for q in quantiles],
                     "skipped_empty_history_valid": skip_v,
                     "skipped_empty_history_test": skip_t,
                     "users_without_train": int((n_before_valid == 0).sum())})
    return split


# --------------------------------------------------------------------- prepare
def prepare(config, data_dir: Optional[str] = None) -> SplitData:
    """Read, k-core filter and split what ``config`` names (see ``Config`` data fields)."""
    from rearec_tf.data.registry import load_interactions

    inter = load_interactions(config, data_dir=data_dir)
    n_raw = len(inter)
    inter = k_core(inter, config.k_core)
    if config.split == "loo":
        split = leave_one_out(build_sequences(inter))
    elif config.split == "timestamp":
        split = timestamp_split(inter, config.split_quantiles)
    else:
        raise DataError(f"split={config.split!r}; choose 'loo' or 'timestamp'")
    split.stats.update({"dataset": config.dataset, "source": inter.source,
                        "k_core": config.k_core, "num_raw_interactions": n_raw})
    return split
