"""The data path: read interaction logs, split them, and feed them to TensorFlow.

::

    from rearec_tf.data import prepare, train_dataset, eval_dataset
    split = prepare(config)                       # SplitData (vocab, train, valid, test)
    ds = train_dataset(split, config.max_len, config.batch_size, mode=config.sample_mode)

The TensorFlow-dependent parts (``pipeline``, ``tfds_builders``) are imported on first
use, so reading and splitting data does not import TensorFlow.
"""
from rearec_tf.data.errors import (ChecksumError, DataError, DataFormatError,
                                   DatasetNotFoundError)
from rearec_tf.data.preprocess import (EvalSet, SplitData, build_sequences, k_core,
                                       leave_one_out, prepare, timestamp_cutoffs,
                                       timestamp_split)
from rearec_tf.data.readers import (FORMATS, Interactions, read_atomic_inter,
                                    read_interactions, read_movielens_ratings, read_table,
                                    read_user_item_pairs, read_user_sequences, sniff_format)
from rearec_tf.data.registry import (DATASETS, ENV_VAR, DatasetSpec, dataset_path, download,
                                     load_interactions, resolve_data_dir, sha256_file, spec,
                                     verify_file)
from rearec_tf.data.vocabulary import PAD, UnknownIdError, Vocabulary

_LAZY = {
    "train_dataset": "rearec_tf.data.pipeline",
    "eval_dataset": "rearec_tf.data.pipeline",
    "num_train_samples": "rearec_tf.data.pipeline",
    "tfds_builder": ("rearec_tf.data.tfds_builders", "builder"),
    "tfds_name": "rearec_tf.data.tfds_builders",
}


def __getattr__(name):  # PEP 562 lazy attributes
    if name in _LAZY:
        import importlib

        target = _LAZY[name]
        mod, attr = target if isinstance(target, tuple) else (target, name)
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rearec_tf.data' has no attribute {name!r}")


__all__ = [
    "ChecksumError", "DataError", "DataFormatError", "DatasetNotFoundError",
    "EvalSet", "SplitData", "build_sequences", "k_core", "leave_one_out", "prepare",
    "timestamp_cutoffs", "timestamp_split",
    "FORMATS", "Interactions", "read_atomic_inter", "read_interactions",
    "read_movielens_ratings", "read_table", "read_user_item_pairs", "read_user_sequences",
    "sniff_format",
    "DATASETS", "ENV_VAR", "DatasetSpec", "dataset_path", "download", "load_interactions",
    "resolve_data_dir", "sha256_file", "spec", "verify_file",
    "PAD", "UnknownIdError", "Vocabulary",
    "train_dataset", "eval_dataset", "num_train_samples", "tfds_builder", "tfds_name",
]
