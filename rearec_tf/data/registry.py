"""Named datasets: where their file lives under the data folder, its format and sha256.

The data folder is ``data_dir`` if given, else ``$REAREC_DATA_DIR``. It is only read
(never written) except by :func:`download`, which writes the file it fetches
atomically. Verified checksums are memoised in-process, keyed by (path, size, mtime),
so nothing is written next to the (possibly read-only) data.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

from rearec_tf.data.errors import ChecksumError, DataError, DatasetNotFoundError
from rearec_tf.data.readers import Interactions, read_interactions

logger = logging.getLogger("rearec_tf.data")

ENV_VAR = "REAREC_DATA_DIR"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: str
    """File path relative to the data folder."""
    format: str
    """Reader name (see :data:`rearec_tf.data.readers.FORMATS`)."""
    sha256: Optional[str]
    """Expected sha256 of the file (None: not verified)."""
    source: str
    """Where the file comes from publicly."""
    url: Optional[str] = None
    """Download URL of a zip holding the file (only the GroupLens originals)."""
    member: Optional[str] = None
    """Name of the file inside the zip at ``url``."""
    terms: str = ""


_S3REC = "https://github.com/RUCAIBox/CIKM2020-S3Rec (data/{f})"

DATASETS: Dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("ml-1m", "ml-1m/ml-1m.txt", "pairs",
                "b725f3acb3986fe3130bffd1e77a74d182a1f51799567a236dbd60270f95b0a2",
                "SASRec's MovieLens-1M: https://github.com/kang205/SASRec (data/ml-1m.txt)",
                terms="MovieLens (GroupLens): research use, no redistribution"),
    DatasetSpec("beauty", "beauty/Beauty.txt", "sequences",
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
                "Amazon Beauty, S3-Rec version: " + _S3REC.format(f="Beauty.txt"),
                terms="Amazon reviews (McAuley et al.): research use, cite"),
    DatasetSpec("sports", "sports/Sports_and_Outdoors.txt", "sequences",
                "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
                "Amazon Sports, S3-Rec version: " + _S3REC.format(f="Sports_and_Outdoors.txt"),
                terms="Amazon reviews (McAuley et al.): research use, cite"),
    DatasetSpec("toys", "toys/Toys_and_Games.txt", "sequences",
                "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
                "Amazon Toys, S3-Rec version: " + _S3REC.format(f="Toys_and_Games.txt"),
                terms="Amazon reviews (McAuley et al.): research use, cite"),
    DatasetSpec("yelp", "yelp/Yelp.txt", "sequences",
                "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
                "Yelp 2019, S3-Rec version: " + _S3REC.format(f="Yelp.txt"),
                terms="Yelp Open Dataset: non-commercial, no redistribution"),
    DatasetSpec("lastfm", "lastfm/LastFM.txt", "sequences",
                "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
                "HetRec Last.fm, S3-Rec version: " + _S3REC.format(f="LastFM.txt"),
                terms="HetRec Last.fm: non-commercial research use"),
    DatasetSpec("ml-100k", "ml-100k/ml-100k.inter", "inter",
                "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                "MovieLens-100K as shipped inside the recbole==1.2.1 wheel "
                "(https://github.com/RUCAIBox/RecBole, dataset/ml-100k)",
                terms="MovieLens (GroupLens): research use, no redistribution"),
    DatasetSpec("movielens-1m-raw", "movielens-1m-raw/ratings.dat", "movielens", None,
                "GroupLens MovieLens 1M ratings.dat: https://grouplens.org/datasets/movielens/1m/",
                url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                member="ml-1m/ratings.dat",
                terms="MovieLens (GroupLens): research use, no redistribution"),
    DatasetSpec("movielens-100k-raw", "movielens-100k-raw/u.data", "movielens", None,
                "GroupLens MovieLens 100K u.data: "
                "https://grouplens.org/datasets/movielens/100k/",
                url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                member="ml-100k/u.data",
                terms="MovieLens (GroupLens): research use, no redistribution"),
)}

# (realpath, size, mtime_ns) -> sha256 hex, for files hashed in this process
_HASH_MEMO: Dict[Tuple[str, int, int], str] = {}


def spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a named dataset."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; named datasets: {sorted(DATASETS)} "
                        "(or use dataset='file' with data_file=...)") from None


def resolve_data_dir(data_dir: Optional[str] = None) -> str:
    """``data_dir`` if given, else ``$REAREC_DATA_DIR``, else :class:`DatasetNotFoundError`."""
    d = data_dir if data_dir else os.environ.get(ENV_VAR)
    if not d:
        raise DatasetNotFoundError(
            f"no data folder given: set {ENV_VAR} (or --data-dir) to the folder holding the "
            f"datasets (sub-folders {sorted({s.path.split('/')[0] for s in DATASETS.values()})})")
    d = os.path.expanduser(os.fspath(d))
    if not os.path.isdir(d):
        raise DatasetNotFoundError(
            f"data folder {d!r} does not exist; set {ENV_VAR} (or --data-dir) to the folder "
            "holding the datasets")
    return d


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, memoised in-process by (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _HASH_MEMO:
        return _HASH_MEMO[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    digest = h.hexdigest()
    _HASH_MEMO[key] = digest
    return digest


def verify_file(path: str, expected: Optional[str], name: str = "") -> None:
    """Raise :class:`ChecksumError` unless ``path`` has sha256 ``expected`` (None: skip)."""
    if expected is None:
        return
    got = sha256_file(path)
    if got != expected.lower():
        raise ChecksumError(
            f"{path}: sha256 {got} != expected {expected}"
            + (f" for dataset {name!r}" if name else "")
            + "; the file is corrupt, truncated or a different version. Re-fetch it from "
            "its public source, or pass verify=False to use it anyway")


def _not_found(s: DatasetSpec, path: str) -> DatasetNotFoundError:
    extra = (f"; or fetch it with rearec_tf.data.download({s.name!r}, data_dir)"
             if s.url else "")
    return DatasetNotFoundError(
        f"dataset {s.name!r}: expected file {path!r} not found. Public source: {s.source}; "
        f"set {ENV_VAR} (or --data-dir) to the folder holding it (it must contain "
        f"{s.path!r}){extra}")


def dataset_path(name: str, data_dir: Optional[str] = None, verify: bool = True) -> str:
    """Path of named dataset ``name`` under the data folder, sha256-verified."""
    s = spec(name)
    try:
        d = resolve_data_dir(data_dir)
    except DatasetNotFoundError as e:
        raise DatasetNotFoundError(
            f"dataset {name!r} (file {s.path!r}, public source: {s.source}): {e}") from None
    path = os.path.join(d, *s.path.split("/"))
    if not os.path.isfile(path):
        raise _not_found(s, path)
    if verify:
        verify_file(path, s.sha256, name)
    return path


def download(name: str, data_dir: str, url: Optional[str] = None,
             overwrite: bool = False) -> str:
    """Fetch the zip of a downloadable dataset and write its file under ``data_dir``.

    Only the GroupLens originals (``movielens-1m-raw``, ``movielens-100k-raw``) have a
    download URL; ``url`` overrides it (e.g. a ``file://`` URL of a local copy). The file
    is written atomically (temporary file + ``os.replace``). Returns its path.
    """
    s = spec(name)
    url = url or s.url
    if not url or not s.member:
        raise DataError(f"dataset {name!r} has no download URL (its terms or host do not "
                        f"allow fetching it); get it from {s.source} and set {ENV_VAR}")
    data_dir = os.path.expanduser(os.fspath(data_dir))
    dest = os.path.join(data_dir, *s.path.split("/"))
    if os.path.isfile(dest) and not overwrite:
        logger.info("%s already exists; not downloading", dest)
        verify_file(dest, s.sha256, name)
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    logger.info("downloading %s from %s", name, url)
    fd, tmp_zip = tempfile.mkstemp(prefix=".download-", suffix=".zip",
                                   dir=os.path.dirname(dest))
    tmp_out = None
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as resp:
            shutil.copyfileobj(resp, out)
        try:
            zf = zipfile.ZipFile(tmp_zip)
        except zipfile.BadZipFile:
            raise DataError(f"{url}: not a zip file; expected the GroupLens zip holding "
                            f"{s.member}") from None
        with zf:
            names = zf.namelist()
            base = s.member.rsplit("/", 1)[-1]
            member = s.member if s.member in names else next(
                (n for n in names if n.rsplit("/", 1)[-1] == base), None)
            if member is None:
                raise DataError(f"{url}: zip holds no {s.member!r} (members: {names[:20]})")
            fd2, tmp_out = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(dest))
            with os.fdopen(fd2, "wb") as out, zf.open(member) as src:
                shutil.copyfileobj(src, out)
        verify_file(tmp_out, s.sha256, name)
        os.replace(tmp_out, dest)
        tmp_out = None
    finally:
        for p in (tmp_zip, tmp_out):
            if p and os.path.exists(p):
                os.remove(p)
    logger.info("wrote %s", dest)
    return dest


def load_interactions(name_or_config: Union[str, "object"], data_dir: Optional[str] = None,
                      verify: bool = True) -> Interactions:
    """Read a named dataset, a file path, or what a :class:`~rearec_tf.config.Config` names.

    With a Config: ``dataset='file'`` reads ``data_file`` with ``data_format`` and the
    ``user_col``/``item_col``/``time_col`` columns; otherwise the named dataset under
    ``data_dir`` (argument, else ``config.data_dir``, else ``$REAREC_DATA_DIR``).
    """
    if isinstance(name_or_config, (str, os.PathLike)):
        name = os.fspath(name_or_config)
        if name in DATASETS:
            s = DATASETS[name]
            return read_interactions(dataset_path(name, data_dir, verify), s.format)
        if os.path.exists(name):
            return read_interactions(name)
        raise DatasetNotFoundError(f"{name!r} is neither a named dataset "
                                   f"({sorted(DATASETS)}) nor an existing file")
    cfg = name_or_config
    if cfg.dataset == "file":
        if not cfg.data_file:
            raise DataError("dataset='file' needs data_file= (--data-file) naming the "
                            "interaction log")
        return read_interactions(cfg.data_file, cfg.data_format, user_col=cfg.user_col,
                                 item_col=cfg.item_col, time_col=cfg.time_col)
    s = spec(cfg.dataset)
    path = dataset_path(cfg.dataset, data_dir or cfg.data_dir, verify)
    return read_interactions(path, s.format)
