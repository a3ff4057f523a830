"""Mapping between external (string) ids and contiguous int indices.

Index 0 is reserved for the padding token ``"[PAD]"``; the ids get 1..N in the order
given. :func:`rearec_tf.data.preprocess.prepare` builds the item vocabulary in a
deterministic order (see :func:`rearec_tf.data.preprocess.first_appearance_order`).
"""
from __future__ import annotations

import json
import os
from typing import Iterable, List, Sequence

import numpy as np

from rearec_tf.data.errors import DataError

PAD = "[PAD]"
_FORMAT = "rearec_tf.vocabulary/1"


class UnknownIdError(DataError, KeyError):
    """An id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class Vocabulary:
    """``Vocabulary(["a", "b"])``: ``[PAD]`` → 0, ``"a"`` → 1, ``"b"`` → 2."""

    def __init__(self, items: Iterable[str], name: str = "item") -> None:
        self._items: List[str] = [str(x) for x in items]
        self.name = name
        if PAD in self._items:
            raise DataError(f"{name} id {PAD!r} is reserved for padding (index 0)")
        import pandas as pd

        self._index = pd.Index(self._items, dtype=object)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][:5].tolist()
            raise DataError(f"{name} vocabulary ids must be unique; duplicated: {dup}")

    # ------------------------------------------------------------------ sizes
    @property
    def size(self) -> int:
        """Number of indices including padding (N + 1): the embedding-table size."""
        return len(self._items) + 1

    @property
    def num_items(self) -> int:
        """Number of real ids N (excluding padding)."""
        return len(self._items)

    def __contains__(self, ext_id: object) -> bool:
        return str(ext_id) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._items == other._items

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, num_items={self.num_items})"

    @property
    def items(self) -> List[str]:
        """The ids in index order 1..N (without padding)."""
        return list(self._items)

    # ---------------------------------------------------------------- lookups
    def lookup(self, ext_ids, unknown: str = "raise") -> np.ndarray:
        """Indices (int32, same shape) of external ids.

        ``unknown="raise"`` (default): an unknown id raises :class:`UnknownIdError`
        (a ``DataError`` and ``KeyError``) naming it; ``unknown="pad"``: it maps to 0.
        """
        if unknown not in ("raise", "pad"):
            raise ValueError(f"unknown={unknown!r}; choose 'raise' or 'pad'")
        arr = np.asarray(ext_ids)
        flat = arr.reshape(-1).astype(str).astype(object)
        idx = self._index.get_indexer(flat)
        if unknown == "raise" and (idx < 0).any():
            bad = flat[idx < 0]
            raise UnknownIdError(
                f"{self.name} id {bad[0]!r} is not in the vocabulary "
                f"({bad.size} unknown id(s) of {flat.size}); use unknown='pad' to map "
                "unknown ids to 0")
        return (idx + 1).astype(np.int32).reshape(arr.shape)

    def ids(self, indices) -> List[str]:
        """External ids of indices (0 → ``"[PAD]"``); out-of-range raises DataError."""
        arr = np.asarray(indices).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.size):
            raise DataError(f"{self.name} index out of range [0, {self.size}): "
                            f"min {arr.min()}, max {arr.max()}")
        table = [PAD] + self._items
        return [table[int(i)] for i in arr]

    # -------------------------------------------------------------- save/load
    def to_dict(self) -> dict:
        return {"format": _FORMAT, "name": self.name, "pad": PAD, "ids": self._items}

    def save(self, path: str) -> None:
        """Write JSON atomically (temporary file + ``os.replace``)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise DataError(f"vocabulary file {path!r} does not exist") from None
        except json.JSONDecodeError as e:
            raise DataError(f"vocabulary file {path!r} is not valid JSON: {e}") from None
        if not isinstance(d, dict) or d.get("format") != _FORMAT or d.get("pad") != PAD:
            raise DataError(f"{path!r} is not a rearec_tf vocabulary file "
                            f"(expected format {_FORMAT!r})")
        return cls(d["ids"], name=d.get("name", "item"))

    @classmethod
    def from_sequence(cls, ids: Sequence[str], name: str = "item") -> "Vocabulary":
        """Vocabulary of the distinct ids in order of first appearance in ``ids``."""
        import pandas as pd

        return cls(pd.unique(np.asarray(ids, dtype=object)).tolist(), name=name)
