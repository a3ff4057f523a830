"""TensorFlow Datasets builders of the named datasets (manual download).

One builder per named dataset of :mod:`rearec_tf.data.registry`, registered as
``rearec_<name>`` with ``-`` → ``_`` (``rearec_beauty``, ``rearec_ml_1m``,
``rearec_movielens_1m_raw`` ...). Each reads the file from ``manual_dir`` (the file
itself, or the data folder holding ``<folder>/<file>``), verifies its sha256 and writes
one ``train`` split with one example per user, in order of first occurrence::

    {"user_id": tf.string, "item_ids": [tf.string], "timestamps": [tf.float64]}

``timestamps`` exists only for formats with timestamps (``inter``, ``movielens``).
Items are chronological (stable by timestamp, ties in file order). Example::

    b = builder("lastfm", data_dir="/tmp/tfds")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir="/work/shared/data"))
    ds = b.as_dataset(split="train")
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Type

import rearec_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow)
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from rearec_tf.data import registry
from rearec_tf.data.errors import DatasetNotFoundError
from rearec_tf.data.preprocess import build_sequences
from rearec_tf.data.readers import read_interactions

_TIMED_FORMATS = ("inter", "movielens")


def tfds_name(dataset: str) -> str:
    """TFDS registration name of a named dataset: ``ml-1m`` → ``rearec_ml_1m``."""
    return "rearec_" + dataset.replace("-", "_")


class RearecSequenceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder: per-user item sequences of one named dataset (``DATASET``)."""

    DATASET: str = ""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Per-user chronological sequences from the raw file."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # TFDS 4.9.10 resolves this through the `importlib_resources` backport, which
        # is not a declared dependency (ModuleNotFoundError); the file path suffices
        # (TFDS looks for an optional checksums.tsv next to it; there is none).
        return epath.Path(__file__)

    @classmethod
    def _spec(cls) -> registry.DatasetSpec:
        return registry.spec(cls.DATASET)

    def _info(self) -> tfds.core.DatasetInfo:
        s = self._spec()
        feats = {"user_id": tfds.features.Text(),
                 "item_ids": tfds.features.Sequence(tfds.features.Text())}
        if s.format in _TIMED_FORMATS:
            # BYTES encoding keeps float64 exact (tf.train.FloatList is float32, which
            # would round 881250949 to 881250944)
            feats["timestamps"] = tfds.features.Tensor(
                shape=(None,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES)
        return self.dataset_info_from_configs(
            description=f"{self.DATASET}: per-user chronological item sequences. "
                        f"Source: {s.source}. Terms: {s.terms}",
            features=tfds.features.FeaturesDict(feats),
            supervised_keys=None,
            disable_shuffling=True,  # keep users in file order
        )

    def _find_file(self, manual_dir) -> str:
        s = self._spec()
        base = s.path.rsplit("/", 1)[-1]
        candidates = [os.path.join(os.fspath(manual_dir), *s.path.split("/")),
                      os.path.join(os.fspath(manual_dir), base)]
        for c in candidates:
            if os.path.isfile(c):
                return c
        raise DatasetNotFoundError(
            f"{self.name}: none of {candidates} exists.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        path = self._find_file(dl_manager.manual_dir)
        registry.verify_file(path, self._spec().sha256, self.DATASET)
        return {"train": self._generate_examples(path)}

    def _generate_examples(self, path: str):
        s = self._spec()
        inter = read_interactions(path, s.format)
        seqs, times = build_sequences(inter, return_timestamps=True)
        for user, items in seqs.items():
            ex = {"user_id": user, "item_ids": items.tolist()}
            if s.format in _TIMED_FORMATS:
                ex["timestamps"] = times[user]
            yield user, ex


def _instructions(s: registry.DatasetSpec) -> str:
    dl = (f"\nOr fetch it with `rearec_tf.data.download({s.name!r}, data_dir)` "
          f"(from {s.url})." if s.url else "")
    return (f"Place `{s.path.rsplit('/', 1)[-1]}` (public source: {s.source}) in the "
            f"manual_dir, or pass as manual_dir the data folder holding `{s.path}` (e.g. "
            f"$REAREC_DATA_DIR).{dl} Terms: {s.terms}.")


def _make(dataset: str) -> Type[RearecSequenceBuilder]:
    s = registry.spec(dataset)
    cls_name = "Rearec" + "".join(p.capitalize() for p in dataset.replace("-", "_").split("_"))
    return type(cls_name, (RearecSequenceBuilder,), {
        "name": tfds_name(dataset),
        "DATASET": dataset,
        "MANUAL_DOWNLOAD_INSTRUCTIONS": _instructions(s),
        "__module__": __name__,
        "__doc__": f"TFDS builder of {dataset!r} ({s.source}).",
    })


BUILDERS: Dict[str, Type[RearecSequenceBuilder]] = {
    name: _make(name) for name in registry.DATASETS}
globals().update({cls.__name__: cls for cls in BUILDERS.values()})


def builder(dataset: str, data_dir: Optional[str] = None, **kw) -> RearecSequenceBuilder:
    """An instance of the TFDS builder of named dataset ``dataset``."""
    registry.spec(dataset)  # clear error for unknown names
    return BUILDERS[dataset](data_dir=data_dir, **kw)
