"""Item side features aligned to the item vocabulary, for the ``feature`` backbone.

::

    from rearec_tf.data.item_features import load_item_features
    features = load_item_features(config, split.vocab)   # -> ItemFeatures
    model = ReaRecModel(config, num_items, item_features=features)

``config.item_features`` names the source:

``"attributes"``
    The dataset's ``<stem>_item2attributes.json`` next to its interaction file (the
    S3-Rec versions of beauty, sports, toys, yelp and lastfm ship one, e.g.
    ``beauty/Beauty_item2attributes.json``): ``{"item_id": [attribute ids...]}`` with
    external item ids as JSON string keys. With ``dataset='file'`` the file is looked up
    next to ``data_file``: ``<stem of data_file>_item2attributes.json``, else the only
    ``*_item2attributes.json`` of that folder. A path ending in ``.json`` names such a
    file directly.
a ``.npy`` path
    A 2-D float array (``num_ids x dim``) whose row ``r`` is the vector of the item with
    external *integer* id ``r`` (row 0 is item ``"0"``; rows of ids the vocabulary does
    not know, e.g. row 0 of 1-based data, are ignored). Only for integer item ids.
a ``.npz`` path
    Arrays ``ids`` (1-D, external item ids, integers or strings) and ``vectors``
    (2-D, ``len(ids) x dim``).
a ``.parquet`` path
    One row per item: an id column (``config.item_col``, default ``item_id``) and either
    a list/array column ``vector`` or several numeric columns (one per dimension, in
    column order).

Alignment and fallback. Ids of the file that the vocabulary does not know are ignored
(counted and logged). Vocabulary items the file does not cover get a *zero* feature
vector and ``has_features=False``: the backbone gives them no feature contribution at
all, so with ``feature_with_id=True`` (the default) their learned ID embedding alone
represents them; with ``feature_with_id=False`` they all share the zero vector (a
warning is logged). If fewer than half of the vocabulary items are found
(:data:`MIN_COVERAGE`) the file is rejected: it most likely belongs to another dataset
or uses other ids. Every problem raises a :class:`~rearec_tf.data.errors.DataError`
naming the file and the fix (a missing file: ``DatasetNotFoundError``, also a
``FileNotFoundError``).
"""
from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from rearec_tf.data.errors import DataError, DatasetNotFoundError
from rearec_tf.data.vocabulary import Vocabulary

logger = logging.getLogger("rearec_tf.data")

MIN_COVERAGE = 0.5
"""Smallest fraction of vocabulary items a feature file must cover."""
ATTRIBUTE_SUFFIX = "_item2attributes.json"
DATASETS_WITH_ATTRIBUTES = ("beauty", "sports", "toys", "yelp", "lastfm")
"""Named datasets whose folder ships a ``*_item2attributes.json`` (S3-Rec versions)."""
FORMATS = (".npy", ".npz", ".parquet", ".json")


@dataclass
class ItemFeatures:
    """Features of the ``N`` vocabulary items, row ``i`` = item index ``i`` (0 = padding).

    Exactly one of ``dense`` and ``attributes`` is set.
    """

    dense: Optional[np.ndarray]
    """float32 ``(N+1, f)`` frozen vectors; row 0 and items without features are 0."""
    attributes: Optional[np.ndarray]
    """int32 ``(N+1, A_max)`` attribute indices ``1..num_attributes``, padded with 0."""
    num_attributes: int
    """Number of distinct attributes (``attributes`` values are in ``0..num_attributes``)."""
    has_features: np.ndarray
    """bool ``(N+1,)``: the item has a feature vector / at least one attribute (row 0 False)."""
    source: str
    """Where the features come from (file path, ``checkpoint:...``)."""

    def __post_init__(self) -> None:
        if (self.dense is None) == (self.attributes is None):
            raise ValueError("ItemFeatures needs exactly one of dense and attributes")
        table = self.dense if self.dense is not None else self.attributes
        if table.ndim != 2:
            raise ValueError(f"ItemFeatures table must be 2-D, got shape {table.shape}")
        if self.has_features.shape != (table.shape[0],):
            raise ValueError(f"has_features shape {self.has_features.shape} != "
                             f"({table.shape[0]},)")
        if self.attributes is not None and self.attributes.size and (
                self.attributes.min() < 0 or self.attributes.max() > self.num_attributes):
            raise ValueError(f"attribute indices must be in [0, {self.num_attributes}]")

    # ---------------------------------------------------------------- shapes
    @property
    def kind(self) -> str:
        """``dense`` or ``attributes``."""
        return "dense" if self.dense is not None else "attributes"

    @property
    def num_items(self) -> int:
        """Real items N (rows minus the padding row)."""
        table = self.dense if self.dense is not None else self.attributes
        return int(table.shape[0]) - 1

    @property
    def feature_dim(self) -> int:
        """Width ``f`` of the dense vectors (0 for attributes)."""
        return 0 if self.dense is None else int(self.dense.shape[1])

    @property
    def max_attributes(self) -> int:
        """``A_max``, the attribute slots per item (0 for dense features)."""
        return 0 if self.attributes is None else int(self.attributes.shape[1])

    @property
    def coverage(self) -> float:
        """Fraction of the N items with features."""
        return float(self.has_features[1:].mean()) if self.num_items else 0.0

    def attribute_pairs(self) -> Tuple[np.ndarray, np.ndarray]:
        """The non-padding ``(item index, attribute index)`` pairs, int32, item-major."""
        if self.attributes is None:
            raise ValueError("dense features have no attribute pairs")
        rows, cols = np.nonzero(self.attributes)
        return rows.astype(np.int32), self.attributes[rows, cols].astype(np.int32)

    @classmethod
    def from_attribute_pairs(cls, num_items: int, rows: np.ndarray, attrs: np.ndarray,
                             num_attributes: int, source: str) -> "ItemFeatures":
        """Inverse of :meth:`attribute_pairs` (pairs need not be sorted)."""
        rows = np.asarray(rows, np.int64)
        attrs = np.asarray(attrs, np.int32)
        order = np.argsort(rows, kind="stable")
        rows, attrs = rows[order], attrs[order]
        counts = np.bincount(rows, minlength=num_items + 1)
        matrix = np.zeros((num_items + 1, max(int(counts.max(initial=0)), 1)), np.int32)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(rows.size) - starts[rows]
        matrix[rows, slot] = attrs
        return cls(dense=None, attributes=matrix, num_attributes=int(num_attributes),
                   has_features=counts > 0, source=source)

    def describe(self) -> str:
        n_with = int(self.has_features[1:].sum())
        what = (f"dense f={self.feature_dim}" if self.dense is not None else
                f"{self.num_attributes} attributes (max {self.max_attributes} per item)")
        return (f"item features from {self.source}: {what}; {n_with}/{self.num_items} "
                f"items covered ({100 * self.coverage:.1f}%)")


# --------------------------------------------------------------------- loading
def load_item_features(config, vocab: Vocabulary,
                       data_dir: Optional[str] = None) -> ItemFeatures:
    """The features ``config.item_features`` names, aligned to ``vocab`` (module docstring).

    ``data_dir`` (else ``config.data_dir``, else ``$REAREC_DATA_DIR``) locates a named
    dataset's attribute file.
    """
    source = config.item_features
    if not source:
        raise DataError("item_features is not set: pass --item-features attributes (the "
                        "dataset's *_item2attributes.json) or the path of a "
                        ".npy/.npz/.parquet/.json feature file")
    if source == "attributes":
        features = load_attribute_file(attributes_path(config, data_dir), vocab)
    else:
        path = os.path.expanduser(os.fspath(source))
        ext = _extension(path)
        if ext not in FORMATS:
            raise DataError(f"item_features={source!r}: unknown format {ext or '(none)'!r}; "
                            f"use 'attributes' or a file ending in {', '.join(FORMATS)}")
        if not os.path.isfile(path):
            raise DatasetNotFoundError(f"item feature file {path!r} does not exist "
                                       "(--item-features)")
        if ext == ".json":
            features = load_attribute_file(path, vocab)
        else:
            features = load_feature_file(path, vocab, id_column=config.item_col)
    missing = features.num_items - int(features.has_features[1:].sum())
    if missing and not getattr(config, "feature_with_id", True):
        logger.warning(
            "%d of %d items have no features in %s and feature_with_id=False: they are all "
            "represented by the same zero vector and cannot be told apart; use "
            "--feature-with-id true or a feature file covering every item",
            missing, features.num_items, features.source)
    logger.info("%s", features.describe())
    return features


def attributes_path(config, data_dir: Optional[str] = None) -> str:
    """Path of the ``*_item2attributes.json`` of the data ``config`` names."""
    from rearec_tf.data.registry import resolve_data_dir, spec

    if config.dataset == "file":
        if not config.data_file:
            raise DataError("dataset='file' needs data_file= (--data-file)")
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(config.data_file)))
        stem = os.path.splitext(os.path.basename(config.data_file))[0]
        expected = os.path.join(folder, stem + ATTRIBUTE_SUFFIX)
        if os.path.isfile(expected):
            return expected
        found = sorted(glob.glob(os.path.join(glob.escape(folder), "*" + ATTRIBUTE_SUFFIX)))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DataError(f"item_features='attributes': {folder!r} holds several attribute "
                            f"files {[os.path.basename(f) for f in found]} and none is named "
                            f"{os.path.basename(expected)!r}; pass --item-features PATH")
        raise DatasetNotFoundError(
            f"item_features='attributes': no attribute file next to {config.data_file!r}: "
            f"expected {expected!r} (or a single *{ATTRIBUTE_SUFFIX} in that folder). "
            f"The S3-Rec versions of {', '.join(DATASETS_WITH_ATTRIBUTES)} ship one; "
            "otherwise pass --item-features PATH of a .npy/.npz/.parquet/.json file")
    s = spec(config.dataset)
    folder, name = os.path.split(os.path.join(resolve_data_dir(data_dir or config.data_dir),
                                              *s.path.split("/")))
    expected = os.path.join(folder, os.path.splitext(name)[0] + ATTRIBUTE_SUFFIX)
    if not os.path.isfile(expected):
        ships = config.dataset in DATASETS_WITH_ATTRIBUTES
        raise DatasetNotFoundError(
            f"item_features='attributes': dataset {config.dataset!r} has no attribute file: "
            f"expected {expected!r}. "
            + ("Its S3-Rec version ships it (RUCAIBox/CIKM2020-S3Rec data/); put it next to "
               "the interaction file. " if ships else "")
            + f"Datasets that ship one: {', '.join(DATASETS_WITH_ATTRIBUTES)}; otherwise pass "
            "--item-features PATH of a .npy/.npz/.parquet feature file")
    return expected


def load_attribute_file(path: str, vocab: Vocabulary) -> ItemFeatures:
    """An ``item2attributes`` JSON file (``{"item_id": [attribute ids...]}``).

    Attributes (ints or strings) of the vocabulary's items get indices ``1..A`` in
    sorted order (numeric when all are integers); an item's duplicates are dropped.
    """
    def unique_keys(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            seen, dup = set(), []
            for k in keys:
                (dup.append(k) if k in seen else seen.add(k))
            raise DataError(f"attribute file {path!r}: duplicate item id(s) {dup[:3]} "
                            f"({len(dup)} duplicate key(s)); every item must appear once")
        return dict(pairs)

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, object_pairs_hook=unique_keys)
    except FileNotFoundError:
        raise DatasetNotFoundError(f"attribute file {path!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"attribute file {path!r} is not valid JSON: {e}") from None
    fix = 'the format is {"item_id": [attribute, ...], ...} (S3-Rec *_item2attributes.json)'
    if not isinstance(doc, dict):
        raise DataError(f"attribute file {path!r}: expected a JSON object mapping item ids "
                        f"to attribute lists, got {type(doc).__name__}; {fix}")
    file_ids = np.array(list(doc.keys()), dtype=object)
    for key, attrs in doc.items():
        if not isinstance(attrs, list) or not all(
                isinstance(a, (int, str)) and not isinstance(a, bool) for a in attrs):
            raise DataError(f"attribute file {path!r}: item {key!r} has {attrs!r}, expected a "
                            f"list of integer or string attribute ids; {fix}")
    index = _align(file_ids, vocab, path)
    keep = index > 0
    lists = [list(dict.fromkeys(doc[k])) for k in file_ids[keep]]  # dedupe, keep order
    tokens = {a for attrs in lists for a in attrs}
    if all(isinstance(a, int) for a in tokens):
        ordered = sorted(tokens)
    else:
        ordered = sorted(tokens, key=str)
    attr_index = {a: i + 1 for i, a in enumerate(ordered)}
    width = max([len(a) for a in lists] + [1])
    matrix = np.zeros((vocab.size, width), np.int32)
    has = np.zeros(vocab.size, bool)
    for row, attrs in zip(index[keep], lists):
        matrix[row, :len(attrs)] = [attr_index[a] for a in attrs]
        has[row] = bool(attrs)
    _log_missing(has, vocab, path)
    return ItemFeatures(dense=None, attributes=matrix, num_attributes=len(ordered),
                        has_features=has, source=os.path.abspath(path))


def load_feature_file(path: str, vocab: Vocabulary, id_column: str = "item_id") -> ItemFeatures:
    """Dense vectors from a ``.npy``, ``.npz`` or ``.parquet`` file (module docstring)."""
    ext = _extension(path)
    if ext == ".npy":
        ids, vectors = _read_npy(path)
    elif ext == ".npz":
        ids, vectors = _read_npz(path)
    elif ext == ".parquet":
        ids, vectors = _read_parquet(path, id_column)
    else:
        raise DataError(f"feature file {path!r}: unknown format {ext!r}; use .npy, .npz or "
                        ".parquet (or .json for attributes)")
    return _dense_features(path, ids, vectors, vocab)


# -------------------------------------------------------------------- readers
def _extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _read_npy(path: str):
    try:
        vectors = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"feature file {path!r}: cannot read it as a numeric .npy array ({e}); "
                        "save a float matrix with np.save") from None
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        shape = getattr(vectors, "shape", None)
        raise DataError(f"feature file {path!r}: expected a 2-D array (num_ids x dim) whose "
                        f"row r is the vector of item id r, got shape {shape}; fix: "
                        "np.save(path, matrix) with matrix.shape == (max_item_id + 1, dim), or "
                        "use a .npz with 'ids' and 'vectors'")
    ids = np.arange(vectors.shape[0]).astype(str).astype(object)
    return ids, vectors


def _read_npz(path: str):
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"feature file {path!r}: cannot read it as an .npz archive ({e})") from None
    with archive:
        missing = [k for k in ("ids", "vectors") if k not in archive.files]
        if missing:
            raise DataError(f"feature file {path!r}: missing array(s) {missing} (found "
                            f"{archive.files}); fix: np.savez(path, ids=item_ids, "
                            "vectors=matrix) with matrix.shape == (len(item_ids), dim)")
        try:
            ids, vectors = archive["ids"], archive["vectors"]
        except ValueError as e:  # object arrays need pickle
            raise DataError(f"feature file {path!r}: {e}; store 'ids' as an int or str "
                            "array and 'vectors' as a 2-D float matrix (ragged vectors are "
                            "saved as object arrays: pad or project them to one length)"
                            ) from None
    if vectors.ndim != 2:
        raise DataError(f"feature file {path!r}: 'vectors' must be 2-D (len(ids) x dim), got "
                        f"shape {vectors.shape}; ragged vectors cannot be stored as one "
                        "array: pad or project them to one dimension first")
    return _normalise_ids(ids, path), vectors


def _read_parquet(path: str, id_column: str):
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types
        raise DataError(f"feature file {path!r}: cannot read it as parquet ({e})") from None
    if id_column not in df.columns:
        raise DataError(f"feature file {path!r}: no id column {id_column!r} (columns: "
                        f"{list(df.columns)[:20]}); name it {id_column!r} or pass "
                        "--item-col COLUMN")
    ids = _normalise_ids(df[id_column].to_numpy(), path)
    if "vector" in df.columns:
        cells = df["vector"].to_numpy()
        lengths = np.array([-1 if c is None else np.size(c) for c in cells])
        bad = np.flatnonzero(lengths != lengths[0]) if len(lengths) else []
        if len(lengths) and (lengths[0] < 1 or len(bad)):
            i = int(bad[0]) if len(bad) else 0
            raise DataError(f"feature file {path!r}: the 'vector' column has inconsistent "
                            f"lengths: item {ids[0]!r} has {lengths[0]}, item {ids[i]!r} has "
                            f"{lengths[i]} ({len(bad)} row(s) differ from the first); every "
                            "vector must have the same length (no nulls)")
        try:
            vectors = (np.stack([np.asarray(c, dtype=np.float64) for c in cells])
                       if len(cells) else np.zeros((0, 1)))
        except (TypeError, ValueError) as e:
            raise DataError(f"feature file {path!r}: 'vector' cells must be numeric lists "
                            f"({e})") from None
        if vectors.ndim != 2:
            raise DataError(f"feature file {path!r}: 'vector' cells must be flat numeric "
                            f"lists; got vectors of shape {vectors.shape[1:]}")
        return ids, vectors
    numeric = [c for c in df.columns if c != id_column
               and pd.api.types.is_numeric_dtype(df[c])]
    if not numeric:
        raise DataError(f"feature file {path!r}: no 'vector' column and no numeric columns "
                        f"besides {id_column!r} (columns: {list(df.columns)[:20]}); store "
                        "one list column 'vector' or one numeric column per dimension")
    ignored = [c for c in df.columns if c != id_column and c not in numeric]
    if ignored:
        logger.info("%s: ignoring non-numeric column(s) %s", path, ignored)
    return ids, df[numeric].to_numpy()


def _normalise_ids(ids, path: str) -> np.ndarray:
    """External ids as str (object array); integral floats become integers."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise DataError(f"feature file {path!r}: ids must be 1-D, got shape {ids.shape}")
    if ids.dtype.kind == "f":
        if not (np.isfinite(ids).all() and (ids == np.round(ids)).all()):
            raise DataError(f"feature file {path!r}: ids must be integers or strings, got "
                            f"non-integral floats (e.g. {ids[~(ids == np.round(ids))][:3]})")
        ids = ids.astype(np.int64)
    if ids.dtype.kind in "iu":
        return ids.astype(str).astype(object)
    out = []
    for x in ids:
        if x is None or (isinstance(x, float) and np.isnan(x)):
            raise DataError(f"feature file {path!r}: null item id")
        out.append(x.decode() if isinstance(x, bytes) else str(x))
    return np.array(out, dtype=object)


# ----------------------------------------------------------------- alignment
def _examples(values: Sequence, n: int = 3) -> List[str]:
    return [str(v) for v in list(values)[:n]]


def _align(file_ids: np.ndarray, vocab: Vocabulary, path: str) -> np.ndarray:
    """Vocabulary index of every file id (0 = unknown); rejects duplicates and files
    covering less than :data:`MIN_COVERAGE` of the vocabulary."""
    import pandas as pd

    dup = pd.Index(file_ids).duplicated()
    if dup.any():
        raise DataError(f"feature file {path!r}: duplicate item id(s) "
                        f"{_examples(file_ids[dup])} ({int(dup.sum())} duplicate row(s)); "
                        "every item must appear once")
    index = vocab.lookup(file_ids, unknown="pad") if len(file_ids) else np.zeros(0, np.int32)
    found = int((index > 0).sum())
    if vocab.num_items and found < MIN_COVERAGE * vocab.num_items:
        raise DataError(
            f"feature file {path!r} covers only {found} of the {vocab.num_items} vocabulary "
            f"items ({100 * found / vocab.num_items:.1f}% < {100 * MIN_COVERAGE:.0f}%): it "
            "is probably for another dataset or uses other item ids. File ids e.g. "
            f"{_examples(file_ids)}, vocabulary ids e.g. {_examples(vocab.items)}; fix: use "
            "the feature file of this dataset, keyed by the same external item ids")
    unknown = int(len(file_ids) - found)
    if unknown:
        logger.info("%s: %d of %d ids are not in the vocabulary (ignored), e.g. %s", path,
                    unknown, len(file_ids), _examples(file_ids[index == 0]))
    return index


def _log_missing(has: np.ndarray, vocab: Vocabulary, path: str) -> None:
    missing = np.flatnonzero(~has[1:]) + 1
    if missing.size:
        logger.info("%s: %d of %d vocabulary items have no features (zero feature vector; "
                    "their ID embedding represents them), e.g. %s", path, missing.size,
                    vocab.num_items, vocab.ids(missing[:3]))


def _dense_features(path: str, ids: np.ndarray, vectors, vocab: Vocabulary) -> ItemFeatures:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise DataError(f"feature file {path!r}: vectors must be 2-D (items x dim), got "
                        f"shape {vectors.shape}")
    if vectors.dtype.kind not in "fiub":
        raise DataError(f"feature file {path!r}: vectors must be numeric, got dtype "
                        f"{vectors.dtype}")
    if vectors.shape[0] != len(ids):
        raise DataError(f"feature file {path!r}: {len(ids)} ids but {vectors.shape[0]} vectors")
    if vectors.shape[1] < 1:
        raise DataError(f"feature file {path!r}: vectors have dimension 0")
    vectors = vectors.astype(np.float32)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise DataError(f"feature file {path!r}: {int(bad.sum())} vector(s) hold NaN or "
                        f"infinite values (float32), e.g. of item(s) {_examples(ids[bad])}; "
                        "fix or drop those rows (dropped items fall back to their ID "
                        "embedding)")
    index = _align(ids, vocab, path)
    keep = index > 0
    dense = np.zeros((vocab.size, vectors.shape[1]), np.float32)
    dense[index[keep]] = vectors[keep]
    has = np.zeros(vocab.size, bool)
    has[index[keep]] = True
    _log_missing(has, vocab, path)
    return ItemFeatures(dense=dense, attributes=None, num_attributes=0, has_features=has,
                        source=os.path.abspath(path))


__all__ = ["ItemFeatures", "load_item_features", "load_attribute_file", "load_feature_file",
           "attributes_path", "MIN_COVERAGE", "DATASETS_WITH_ATTRIBUTES"]
