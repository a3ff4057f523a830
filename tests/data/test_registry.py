import hashlib
import os
import zipfile

import pytest

from rearec_tf.config import Config
from rearec_tf.data import (DATASETS, ChecksumError, DataError, DatasetNotFoundError,
                            dataset_path, download, load_interactions, registry,
                            resolve_data_dir, sha256_file)

README_SHA = {
    "ml-1m": "b725f3acb3986fe3130bffd1e77a74d182a1f51799567a236dbd60270f95b0a2",
    "beauty": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    "sports": "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
    "toys": "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
    "yelp": "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
    "lastfm": "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
    "ml-100k": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
}


def test_registry_entries():
    assert {k: DATASETS[k].sha256 for k in README_SHA} == README_SHA
    assert DATASETS["beauty"].path == "beauty/Beauty.txt"
    assert DATASETS["ml-100k"].path == "ml-100k/ml-100k.inter"
    assert DATASETS["ml-100k"].format == "inter" and DATASETS["ml-1m"].format == "pairs"
    assert DATASETS["movielens-1m-raw"].url == \
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert DATASETS["movielens-100k-raw"].url == \
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    with pytest.raises(DataError, match="unknown dataset 'netflix'; named datasets: "):
        dataset_path("netflix")


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REAREC_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == str(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_dir(str(other)) == str(other)
    monkeypatch.delenv("REAREC_DATA_DIR")
    with pytest.raises(DatasetNotFoundError, match=r"set REAREC_DATA_DIR \(or --data-dir\)"):
        resolve_data_dir()
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        resolve_data_dir(str(tmp_path / "missing"))


def test_all_named_files_verify(data_dir):
    for name in README_SHA:
        p = dataset_path(name, str(data_dir))
        assert p == os.path.join(str(data_dir), *DATASETS[name].path.split("/"))


def test_missing_file_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        dataset_path("lastfm", str(tmp_path))
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert os.path.join(str(tmp_path), "lastfm", "LastFM.txt") in msg
    assert "https://github.com/RUCAIBox/CIKM2020-S3Rec" in msg
    assert "set REAREC_DATA_DIR (or --data-dir) to the folder holding it" in msg


def test_checksum_mismatch_and_memo(tmp_path):
    d = tmp_path / "lastfm"
    d.mkdir()
    f = d / "LastFM.txt"
    f.write_text("1 2 3\n")
    with pytest.raises(ChecksumError) as e:
        dataset_path("lastfm", str(tmp_path))
    msg = str(e.value)
    assert README_SHA["lastfm"] in msg and hashlib.sha256(b"1 2 3\n").hexdigest() in msg
    assert dataset_path("lastfm", str(tmp_path), verify=False) == str(f)
    # memo keyed by (path, size, mtime): a changed file is re-hashed
    assert sha256_file(str(f)) == hashlib.sha256(b"1 2 3\n").hexdigest()
    f.write_text("1 2 3 4\n")
    assert sha256_file(str(f)) == hashlib.sha256(b"1 2 3 4\n").hexdigest()
    assert any(k[0] == os.path.realpath(f) for k in registry._HASH_MEMO)


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return path.as_uri()


def test_download_file_url(tmp_path):
    url = _zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": "196\t242\t3\t881250949\n"
                                                            "186\t302\t3\t891717742\n",
                                          "ml-100k/README": "x"})
    data = tmp_path / "data"
    p = download("movielens-100k-raw", str(data), url=url)
    assert p == str(data / "movielens-100k-raw" / "u.data")
    assert os.listdir(data / "movielens-100k-raw") == ["u.data"]  # no temporary left
    inter = load_interactions("movielens-100k-raw", data_dir=str(data))
    assert inter.user.tolist() == ["196", "186"] and inter.timestamp.tolist() == [881250949.0,
                                                                                  891717742.0]
    # present: not fetched again (a bad URL is not touched)
    assert download("movielens-100k-raw", str(data), url="file:///nonexistent.zip") == p

    url1m = _zip(tmp_path / "ml-1m.zip", {"ml-1m/ratings.dat": "1::1193::5::978300760\n"})
    p = download("movielens-1m-raw", str(data), url=url1m)
    assert open(p).read() == "1::1193::5::978300760\n"


def test_download_errors(tmp_path):
    url = _zip(tmp_path / "bad.zip", {"other.txt": "x"})
    with pytest.raises(DataError, match="zip holds no 'ml-1m/ratings.dat'"):
        download("movielens-1m-raw", str(tmp_path / "d"), url=url)
    assert os.listdir(tmp_path / "d" / "movielens-1m-raw") == []
    notzip = tmp_path / "nz.zip"
    notzip.write_text("hello")
    with pytest.raises(DataError, match="not a zip file"):
        download("movielens-1m-raw", str(tmp_path / "d"), url=notzip.as_uri())
    with pytest.raises(DataError, match="has no download URL"):
        download("beauty", str(tmp_path / "d"))


def test_load_interactions_from_config(tmp_path, data_dir):
    csv = tmp_path / "log.csv"
    csv.write_text("who,what,when\nA,x,3\nA,y,1\n")
    cfg = Config(dataset="file", data_file=str(csv), data_format="csv", user_col="who",
                 item_col="what", time_col="when")
    inter = load_interactions(cfg)
    assert inter.item.tolist() == ["x", "y"] and inter.timestamp.tolist() == [3.0, 1.0]
    inter = load_interactions(Config(dataset="lastfm", data_dir=str(data_dir)))
    assert len(inter) == 52551
    with pytest.raises(DataError, match="needs data_file"):
        load_interactions(Config(dataset="file"))
