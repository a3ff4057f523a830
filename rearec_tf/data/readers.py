"""Readers of interaction logs.

Every reader returns :class:`Interactions`: one row per interaction, in file order, with
string user and item ids and float64 timestamps (or ``None`` when the format has none, in
which case the file order *is* the chronological order within each user).

Formats (``fmt`` names used by :func:`read_interactions` and ``Config.data_format``):

``pairs``      ``user item`` per line, integer ids, chronological within user
               (SASRec's ``ml-1m.txt``).
``sequences``  ``user item1 item2 ...``, one user per line, integer ids, chronological
               (the S3-Rec files ``Beauty.txt`` etc.).
``inter``      RecBole atomic file: tab-separated, typed header
               ``user_id:token  item_id:token  rating:float  timestamp:float``.
``movielens``  GroupLens ratings: ``user::item::rating::timestamp`` (``ratings.dat``)
               or tab-separated ``user item rating timestamp`` (``u.data``).
``csv``        a CSV/TSV table with named columns (``sep``), read with pandas.
``parquet``    a Parquet table with named columns.

Bad input is never skipped silently: a malformed line raises :class:`DataFormatError`
naming file, line, rule and fix; blank lines are skipped, counted and logged (logger
``rearec_tf.data``) with the file name and count; an empty file raises
:class:`DataError`.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np

from rearec_tf.data.errors import DataError, DataFormatError, DatasetNotFoundError

logger = logging.getLogger("rearec_tf.data")

FORMATS = ("pairs", "sequences", "inter", "movielens", "csv", "parquet")


@dataclass
class Interactions:
    """An interaction log, one row per interaction, in file order."""

    user: np.ndarray
    """String user ids, shape (n,)."""
    item: np.ndarray
    """String item ids, shape (n,)."""
    timestamp: Optional[np.ndarray]
    """float64 timestamps, shape (n,), or ``None``: file order is chronological per user."""
    source: str
    """Path of the file read (or a description)."""

    def __post_init__(self) -> None:
        self.user = np.asarray(self.user, dtype=str)
        self.item = np.asarray(self.item, dtype=str)
        if self.timestamp is not None:
            self.timestamp = np.asarray(self.timestamp, dtype=np.float64)
            if self.timestamp.shape != self.user.shape:
                raise DataError(f"{self.source}: timestamp shape {self.timestamp.shape} != "
                                f"user shape {self.user.shape}")
        if self.user.shape != self.item.shape or self.user.ndim != 1:
            raise DataError(f"{self.source}: user shape {self.user.shape} != item shape "
                            f"{self.item.shape} (both must be 1-D and equal)")

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def has_timestamps(self) -> bool:
        return self.timestamp is not None

    @property
    def num_users(self) -> int:
        return int(len(np.unique(self.user)))

    @property
    def num_items(self) -> int:
        return int(len(np.unique(self.item)))

    def subset(self, mask_or_index: np.ndarray) -> "Interactions":
        """The rows selected by a boolean mask or an index array (order kept)."""
        ts = None if self.timestamp is None else self.timestamp[mask_or_index]
        return Interactions(self.user[mask_or_index], self.item[mask_or_index], ts,
                            self.source)


# ----------------------------------------------------------------------------- helpers
def _check_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"interaction file {path!r} does not exist (or is not a file); check the path, "
            "or for a named dataset set REAREC_DATA_DIR (or --data-dir) to the folder "
            "holding it")


def _lines(path: str) -> Iterator[Tuple[int, str]]:
    """Yield (1-based line number, line without newline) for every line of ``path``."""
    _check_exists(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                yield no, line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e}); the readers expect UTF-8 "
                        "text (use fmt='parquet' for a Parquet table)") from None


def _log_blank(path: str, blank: int) -> None:
    if blank:
        logger.warning("%s: skipped %d blank line(s)", path, blank)


def _empty(path: str, what: str = "interactions") -> DataError:
    return DataError(f"{path}: the file holds no {what} (it is empty or only blank lines); "
                     "point to a non-empty interaction file")


def _int_id(tok: str, path: str, no: int, line: str, fmt_rule: str, what: str) -> str:
    if not tok.isdigit():  # ascii/unicode digits only: no sign, no decimal point
        raise DataFormatError(
            path, no, line,
            f"{what} must be a non-negative integer id, got {tok!r}",
            f"the {fmt_rule}; use fmt='inter' or fmt='csv' for string ids")
    return tok


def _timestamp(tok: str, path: str, no: int, line: str, fix: str) -> float:
    try:
        t = float(tok)
    except ValueError:
        t = math.nan
        ok = False
    else:
        ok = math.isfinite(t)
    if not ok:
        raise DataFormatError(path, no, line,
                              f"timestamp must be a finite number, got {tok!r}", fix)
    return t


# ----------------------------------------------------------------------------- readers
_PAIRS_RULE = "'pairs' format is `user item` per line with integer ids"
_SEQ_RULE = "'sequences' format is `user item1 item2 ...` per line with integer ids"


def read_user_item_pairs(path: str) -> Interactions:
    """``user item`` per line (SASRec ``ml-1m.txt``); file order is chronological."""
    path = os.fspath(path)
    users: List[str] = []
    items: List[str] = []
    blank = 0
    for no, line in _lines(path):
        parts = line.split()
        if not parts:
            blank += 1
            continue
        if len(parts) != 2:
            raise DataFormatError(
                path, no, line, f"expected 2 fields (user item), got {len(parts)}",
                f"the {_PAIRS_RULE}; a file with `user item1 item2 ...` lines is the "
                "'sequences' format")
        users.append(_int_id(parts[0], path, no, line, _PAIRS_RULE, "user"))
        items.append(_int_id(parts[1], path, no, line, _PAIRS_RULE, "item"))
    _log_blank(path, blank)
    if not users:
        raise _empty(path)
    return Interactions(np.array(users), np.array(items), None, path)


def read_user_sequences(path: str) -> Interactions:
    """``user i1 i2 ...`` one user per line (S3-Rec ``Beauty.txt`` etc.), chronological."""
    path = os.fspath(path)
    users: List[str] = []
    items: List[str] = []
    seen = {}
    blank = 0
    for no, line in _lines(path):
        parts = line.split()
        if not parts:
            blank += 1
            continue
        if len(parts) < 2:
            raise DataFormatError(
                path, no, line, f"expected at least 2 fields (user and one item), got "
                f"{len(parts)}", f"the {_SEQ_RULE}; remove users without items")
        user = _int_id(parts[0], path, no, line, _SEQ_RULE, "user")
        if user in seen:
            raise DataFormatError(
                path, no, line, f"user {user} already has a sequence on line {seen[user]}",
                f"the {_SEQ_RULE} and exactly one line per user; merge the two lines in "
                "chronological order")
        seen[user] = no
        for k, tok in enumerate(parts[1:], 2):
            _int_id(tok, path, no, line, _SEQ_RULE, f"item (field {k})")
        users.extend([user] * (len(parts) - 1))
        items.extend(parts[1:])
    _log_blank(path, blank)
    if not users:
        raise _empty(path)
    return Interactions(np.array(users), np.array(items), None, path)


def read_atomic_inter(path: str, user_field: str = "user_id", item_field: str = "item_id",
                      time_field: Optional[str] = "timestamp") -> Interactions:
    """RecBole atomic ``.inter`` file: tab-separated with a typed header.

    Header fields look like ``name:type`` (``user_id:token``); the type is optional. Ids
    are kept as strings (RecBole ``token``). When ``time_field`` is not in the header the
    timestamps are ``None`` (file order is then taken as chronological).
    """
    path = os.fspath(path)
    header: Optional[List[str]] = None
    users: List[str] = []
    items: List[str] = []
    times: List[float] = []
    blank = 0
    iu = ii = it = -1
    fix = (f"a RecBole .inter file is tab-separated with a header naming the fields "
           f"({user_field}:token, {item_field}:token, {time_field}:float)")
    for no, line in _lines(path):
        if not line.strip():
            blank += 1
            continue
        parts = line.split("\t")
        if header is None:
            header = [p.split(":", 1)[0].strip() for p in parts]
            missing = [f for f in (user_field, item_field) if f not in header]
            if missing:
                raise DataFormatError(
                    path, no, line, f"header lacks field(s) {missing}; available fields: "
                    f"{header}", f"{fix}; or pass user_field=/item_field= naming the columns")
            iu, ii = header.index(user_field), header.index(item_field)
            if time_field is not None and time_field in header:
                it = header.index(time_field)
            elif time_field is not None:
                logger.info("%s: no %r field in header %s; timestamps = file order",
                            path, time_field, header)
            continue
        if len(parts) != len(header):
            raise DataFormatError(
                path, no, line, f"expected {len(header)} tab-separated fields (as in the "
                f"header {header}), got {len(parts)}", fix)
        u, i = parts[iu].strip(), parts[ii].strip()
        if not u or not i:
            raise DataFormatError(path, no, line, "empty user or item id", fix)
        users.append(u)
        items.append(i)
        if it >= 0:
            times.append(_timestamp(parts[it].strip(), path, no, line, fix))
    _log_blank(path, blank)
    if header is None:
        raise _empty(path, "header and no interactions")
    if not users:
        raise _empty(path)
    ts = np.array(times, dtype=np.float64) if it >= 0 else None
    return Interactions(np.array(users), np.array(items), ts, path)


_ML_RULE = ("MovieLens ratings are `user::item::rating::timestamp` (ratings.dat) or "
            "tab-separated `user item rating timestamp` (u.data) with integer ids")


def read_movielens_ratings(path: str) -> Interactions:
    """GroupLens ``ratings.dat`` (``::``-separated) or ``u.data`` (tab-separated)."""
    path = os.fspath(path)
    users: List[str] = []
    items: List[str] = []
    times: List[float] = []
    blank = 0
    sep: Optional[str] = None
    for no, line in _lines(path):
        if not line.strip():
            blank += 1
            continue
        if sep is None:
            sep = "::" if "::" in line else "\t"
        parts = line.split(sep) if sep == "::" else line.split()
        if len(parts) != 4:
            raise DataFormatError(
                path, no, line, f"expected 4 fields separated by {sep!r} (user, item, "
                f"rating, timestamp), got {len(parts)}", _ML_RULE)
        users.append(_int_id(parts[0].strip(), path, no, line, _ML_RULE, "user"))
        items.append(_int_id(parts[1].strip(), path, no, line, _ML_RULE, "item"))
        times.append(_timestamp(parts[3].strip(), path, no, line, _ML_RULE))
    _log_blank(path, blank)
    if not users:
        raise _empty(path)
    return Interactions(np.array(users), np.array(items), np.array(times), path)


def _to_seconds(col, path: str, name: str, line_of) -> np.ndarray:
    """Convert a timestamp column (numbers, datetimes or strings of either) to float64."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(col):
        if getattr(col.dt, "tz", None) is not None:
            col = col.dt.tz_convert("UTC").dt.tz_localize(None)
        out = (col - pd.Timestamp(0)) / pd.Timedelta(seconds=1)
        out = out.to_numpy(dtype=np.float64, na_value=np.nan)
    elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        out = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        as_num = pd.to_numeric(col, errors="coerce")
        if as_num.notna().all():
            out = as_num.to_numpy(dtype=np.float64)
        else:
            dt = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
            if dt.notna().all():
                out = ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
                    dtype=np.float64)
            else:
                out = as_num.to_numpy(dtype=np.float64)  # NaN where unparsable
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        r = int(bad[0])
        raise DataFormatError(
            path, line_of(r), str(col.iloc[r]),
            f"column {name!r} row {r}: timestamp must be a finite number or a date-time, "
            f"got {col.iloc[r]!r} ({bad.size} bad row(s))",
            f"fix the value or pass time_col=None to use the file order")
    return out


def read_table(path: str, user_col: str, item_col: str, time_col: Optional[str] = None,
               sep: str = ",") -> Interactions:
    """A CSV/TSV (``sep``) or Parquet table (by extension) with named columns.

    Ids are read as strings. A missing column raises :class:`DataError` listing the
    available ones. In CSV, blank lines are skipped and counted; an empty cell in a used
    column raises :class:`DataFormatError` with its line number. Timestamps may be numbers
    or date-times (converted to seconds since the epoch, UTC).
    """
    import pandas as pd

    path = os.fspath(path)
    _check_exists(path)
    is_parquet = path.lower().endswith((".parquet", ".pq"))
    if os.path.getsize(path) == 0:
        raise _empty(path)
    if is_parquet:
        df = pd.read_parquet(path)
        line_of = lambda r: None  # noqa: E731  (no lines in a parquet file)
    else:
        try:
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                             skip_blank_lines=False)
        except pd.errors.EmptyDataError:
            raise _empty(path) from None
        except pd.errors.ParserError as e:
            raise DataError(f"{path}: not a valid {sep!r}-separated table: {e}; fix the "
                            "line named above or pass the right sep=") from None
        line_of = lambda r: r + 2  # noqa: E731  (header is line 1)
    cols = [c for c in (user_col, item_col, time_col) if c is not None]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not found; available columns: "
                        f"{[str(c) for c in df.columns]}; pass user_col=/item_col=/time_col= "
                        "(or --user-col/--item-col/--time-col) naming them")
    if not is_parquet:
        blank_mask = df.isna().all(axis=1).to_numpy()
        nblank = int(blank_mask.sum())
        _log_blank(path, nblank)
        if nblank:
            keep_rows = np.flatnonzero(~blank_mask)
            df = df.iloc[keep_rows]
            line_of = lambda r, _k=keep_rows: int(_k[r]) + 2  # noqa: E731
    if len(df) == 0:
        raise _empty(path)

    def raw_line(r: int) -> Optional[str]:
        if is_parquet:
            return str(df.iloc[r].to_dict())
        return raw_line_by_no(path, line_of(r))

    for c in (user_col, item_col):
        na = np.flatnonzero(df[c].isna().to_numpy())
        if na.size:
            r = int(na[0])
            raise DataFormatError(path, line_of(r), raw_line(r),
                                  f"column {c!r} is empty ({na.size} row(s))",
                                  "every interaction needs a user and an item id")
    user = df[user_col].astype(str).str.strip().to_numpy(dtype=str)
    item = df[item_col].astype(str).str.strip().to_numpy(dtype=str)
    ts = None
    if time_col is not None:
        try:
            ts = _to_seconds(df[time_col].reset_index(drop=True), path, time_col, line_of)
        except DataFormatError as e:
            row = None
            if e.line_no is not None and not is_parquet:
                row = raw_line_by_no(path, e.line_no)
            raise DataFormatError(e.path, e.line_no, row if row is not None else e.line,
                                  e.rule, e.fix) from None
    return Interactions(user, item, ts, path)


def raw_line_by_no(path: str, line_no: int) -> Optional[str]:
    """Line ``line_no`` (1-based) of a text file, or None."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            if no == line_no:
                return line.rstrip("\r\n")
    return None


# --------------------------------------------------------------------------- dispatch
def sniff_format(path: str) -> str:
    """Infer the format of ``path`` from its extension, else from its first lines.

    ``.inter`` → inter, ``.csv``/``.tsv`` → csv, ``.parquet``/``.pq`` → parquet,
    ``.dat``/``u.data`` → movielens. Other text: ``::`` → movielens; a tab header with
    ``name:type`` fields → inter; any line with more than 2 fields → sequences; only
    2-field lines → pairs (a sequences file where every user has one item reads the same).
    """
    path = os.fspath(path)
    low = path.lower()
    if low.endswith(".inter"):
        return "inter"
    if low.endswith((".csv", ".tsv")):
        return "csv"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if low.endswith((".dat", ".data")):
        return "movielens"
    n = 0
    widths = set()
    for no, line in _lines(path):
        if not line.strip():
            continue
        if "::" in line:
            return "movielens"
        if no == 1 and "\t" in line and ":" in line.split("\t")[0]:
            return "inter"
        widths.add(len(line.split()))
        n += 1
        if n >= 200:
            break
    if not widths:
        raise _empty(path)
    if max(widths) > 2:
        if widths == {4} and n > 1:
            # `user item rating timestamp` lines: u.data-style
            return "movielens"
        return "sequences"
    return "pairs"


def read_interactions(path: str, fmt: Optional[str] = None, **kw) -> Interactions:
    """Read ``path`` with the reader of ``fmt`` (inferred by :func:`sniff_format` if None).

    Keyword arguments go to the reader. For ``inter``, ``csv`` and ``parquet`` the config
    names ``user_col``/``item_col``/``time_col`` are accepted (and mapped to
    ``user_field``/``item_field``/``time_field`` for ``inter``); they are ignored by the
    fixed-layout formats. ``time_col`` ``None``, ``""`` or ``"none"`` means no timestamps
    (the file order is then chronological within user).
    """
    path = os.fspath(path)
    _check_exists(path)
    if fmt is None:
        fmt = sniff_format(path)
        logger.info("%s: inferred format %r", path, fmt)
    if fmt == "tsv":
        fmt = "csv"
        kw.setdefault("sep", "\t")
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r} for {path}; choose one of {FORMATS}")
    cols = {k: kw.pop(k) for k in ("user_col", "item_col", "time_col") if k in kw}
    if "time_col" in cols and str(cols["time_col"]).lower() in ("", "none", "null"):
        cols["time_col"] = None  # `--time-col none` on the command line: no timestamps
    if fmt == "pairs":
        return read_user_item_pairs(path, **kw)
    if fmt == "sequences":
        return read_user_sequences(path, **kw)
    if fmt == "movielens":
        return read_movielens_ratings(path, **kw)
    if fmt == "inter":
        for src, dst in (("user_col", "user_field"), ("item_col", "item_field"),
                         ("time_col", "time_field")):
            if src in cols:
                kw.setdefault(dst, cols[src])
        return read_atomic_inter(path, **kw)
    # csv / parquet
    if "sep" not in kw and path.lower().endswith(".tsv"):
        kw["sep"] = "\t"
    return read_table(path, cols.get("user_col", "user_id"), cols.get("item_col", "item_id"),
                      cols.get("time_col"), **kw)
