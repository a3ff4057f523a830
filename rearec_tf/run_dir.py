"""Layout of a run directory and loading a trained model back from it.

A run directory holds everything needed to re-run, re-evaluate or export a result::

    RUN/
      config.json           the Config of the run (rearec_tf.config.Config)
      vocabulary.json       item vocabulary: external id <-> index (0 = padding)
      item_counts.npy       training frequency per item index (log-Q correction, analyses)
      checkpoints/
        state.json          latest/best epoch, best validation metric, patience, history
        epoch-0003/         tf.train.Checkpoint(model=..., optimizer=...) files ("ckpt*")
        ...
      history.json          per-epoch training losses and validation metrics
      metrics.json          final valid + test metrics, both masking modes
      logs/                 TensorBoard event files

Checkpoint folders are written to a temporary sibling and renamed, and state.json is
replaced atomically, so an interrupted run never leaves a half-written checkpoint that
``state.json`` points to.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.config import Config

CONFIG = "config.json"
VOCABULARY = "vocabulary.json"
ITEM_COUNTS = "item_counts.npy"
CHECKPOINTS = "checkpoints"
STATE = "state.json"
HISTORY = "history.json"
METRICS = "metrics.json"
LOGS = "logs"
CKPT_PREFIX = "ckpt"


def checkpoint_dir(run_dir: str, epoch: int) -> str:
    return os.path.join(run_dir, CHECKPOINTS, f"epoch-{epoch:04d}")


def write_json(path: str, obj: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_jsonable)
        f.write("\n")
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def read_state(run_dir: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(run_dir, CHECKPOINTS, STATE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_run(run_dir: str, which: str = "best") -> Tuple[Config, Any, "ReaRecModel"]:  # noqa: F821
    """Rebuild ``(config, vocabulary, model)`` of a run, weights from the ``best`` or
    ``latest`` checkpoint (or an epoch number as a string)."""
    from rearec_tf.data.vocabulary import Vocabulary
    from rearec_tf.models import ReaRecModel

    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist; pass the --run-dir "
                                "of a finished or interrupted `python -m rearec_tf.train` run")
    config = Config.load(os.path.join(run_dir, CONFIG))
    vocab = Vocabulary.load(os.path.join(run_dir, VOCABULARY))
    counts_path = os.path.join(run_dir, ITEM_COUNTS)
    counts = np.load(counts_path) if os.path.exists(counts_path) else None
    state = read_state(run_dir)
    if state is None:
        raise FileNotFoundError(f"{run_dir!r} has no checkpoint yet ({CHECKPOINTS}/{STATE} is "
                                "missing): train at least one epoch first")
    if which in ("best", "latest"):
        epoch = state.get(f"{which}_epoch")
        if epoch is None:
            epoch = state["latest_epoch"]
    else:
        epoch = int(which)
    path = os.path.join(checkpoint_dir(run_dir, epoch), CKPT_PREFIX)
    item_features = None
    if config.backbone == "feature":
        # The checkpoint carries the (frozen) features the run was trained with, aligned
        # to its vocabulary: no need for the original feature file or data folder.
        from rearec_tf.backbones.feature import item_features_from_checkpoint

        item_features = item_features_from_checkpoint(path, vocab.num_items)
    model = ReaRecModel(config, num_items=vocab.num_items, item_counts=counts,
                        item_features=item_features)
    tf.train.Checkpoint(model=model).read(path).expect_partial()
    return config, vocab, model
