import pytest

import rearec_tf  # noqa: F401
import tensorflow_datasets as tfds

from rearec_tf.data import DatasetNotFoundError
from rearec_tf.data.tfds_builders import BUILDERS, builder, tfds_name


def test_builders_registered():
    assert set(BUILDERS) == {"ml-1m", "beauty", "sports", "toys", "yelp", "lastfm", "ml-100k",
                             "movielens-1m-raw", "movielens-100k-raw"}
    assert tfds_name("ml-1m") == "rearec_ml_1m" and BUILDERS["lastfm"].name == "rearec_lastfm"
    assert tfds.builder_cls("rearec_lastfm") is BUILDERS["lastfm"]
    assert "LastFM.txt" in BUILDERS["lastfm"].MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "CIKM2020-S3Rec" in BUILDERS["lastfm"].MANUAL_DOWNLOAD_INSTRUCTIONS


def test_build_lastfm(tmp_path, data_dir):
    raw = (data_dir / "lastfm" / "LastFM.txt").read_text().split("\n")
    raw = [line.split() for line in raw if line.strip()]
    b = builder("lastfm", data_dir=str(tmp_path / "tfds"))
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(data_dir / "lastfm")))
    assert b.info.splits["train"].num_examples == len(raw) == 1090
    ds = tfds.load("rearec_lastfm", data_dir=str(tmp_path / "tfds"), split="train",
                   download=False)
    assert set(ds.element_spec) == {"user_id", "item_ids"}
    users, n_items = [], 0
    for i, ex in enumerate(ds):
        users.append(ex["user_id"].numpy().decode())
        items = [x.decode() for x in ex["item_ids"].numpy()]
        n_items += len(items)
        if i < 3:
            assert items == raw[i][1:]
    assert users == [r[0] for r in raw]  # file order kept
    assert n_items == 52551


def test_missing_manual_file(tmp_path):
    b = builder("lastfm", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DatasetNotFoundError, match="Place `LastFM.txt`"):
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(tmp_path)))
