"""Atomic epoch checkpoints of a run directory (layout: :mod:`rearec_tf.run_dir`).

Epoch numbers are **1-based counts of completed epochs**: ``epoch-0001`` holds the
weights after the first epoch, ``state.json``'s ``latest_epoch = 3`` means three epochs
are done and a resumed run continues with the 0-based epoch index 3 (Keras' "Epoch 4").

Writing epoch ``e``:

1. ``tf.train.Checkpoint(model=..., optimizer=..., rng=...)`` is written into a
   temporary sibling folder ``checkpoints/.tmp-epoch-NNNN-<pid>``;
2. the folder is renamed to ``checkpoints/epoch-NNNN`` (atomic on POSIX);
3. ``state.json`` is rewritten atomically (temporary file + ``os.replace``);
4. epoch folders other than the latest and the best are deleted.

A crash at any point leaves ``state.json`` pointing at complete checkpoints only.
rearec-tf's own dropout and noise are stateless (keyed by the seed and the optimizer's
step counter, which the checkpoint holds), so a resumed run draws the same masks as an
uninterrupted one. ``rng`` is only written for models that contain Keras random layers
built with ``tf.random.Generator`` s (see :func:`random_generators`), e.g. a user's own
layers. :func:`rearec_tf.run_dir.load_run` reads only ``model``.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Optional

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf import run_dir as rd

STATE_VERSION = 1


def random_generators(model: tf.keras.Model) -> List[tf.random.Generator]:
    """The ``tf.random.Generator`` of every built random layer (e.g. Dropout) of
    ``model``, in a deterministic order. Empty unless the model was built under
    ``tf.keras.backend.experimental.enable_tf_random_generator()``."""
    gens = []
    for layer in model.submodules:
        rng = getattr(layer, "_random_generator", None)
        gen = getattr(rng, "_generator", None)
        if isinstance(gen, tf.random.Generator):
            gens.append(gen)
    return gens


class CheckpointManager:
    """Writes, restores and prunes the epoch checkpoints of one run directory."""

    def __init__(self, run_dir: str, model: tf.keras.Model,
                 optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
                 keep_best: bool = True):
        self.run_dir = run_dir
        self.root = os.path.join(run_dir, rd.CHECKPOINTS)
        self.model = model
        self.optimizer = optimizer
        self.keep_best = keep_best
        objects: Dict[str, Any] = {"model": model}
        if optimizer is not None:
            objects["optimizer"] = optimizer
        gens = random_generators(model)
        if gens:
            holder = tf.Module(name="rng")
            holder.generators = gens
            objects["rng"] = holder
        self.checkpoint = tf.train.Checkpoint(**objects)

    # ------------------------------------------------------------------ state
    def read_state(self) -> Optional[Dict[str, Any]]:
        return rd.read_state(self.run_dir)

    def write_state(self, state: Dict[str, Any]) -> None:
        os.makedirs(self.root, exist_ok=True)
        state = dict(state, version=STATE_VERSION)
        rd.write_json(os.path.join(self.root, rd.STATE), state)

    # ------------------------------------------------------------ checkpoints
    def path(self, epoch: int) -> str:
        return rd.checkpoint_dir(self.run_dir, epoch)

    def save(self, epoch: int, state: Dict[str, Any]) -> str:
        """Write the checkpoint of (1-based) ``epoch``, then ``state`` (which must name
        ``latest_epoch`` and ``best_epoch``), then prune. Returns the folder."""
        os.makedirs(self.root, exist_ok=True)
        final = self.path(epoch)
        tmp = os.path.join(self.root, f".tmp-epoch-{epoch:04d}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        self.checkpoint.write(os.path.join(tmp, rd.CKPT_PREFIX))
        if os.path.exists(final):  # re-training an epoch after a crash before state.json
            shutil.rmtree(final)
        os.rename(tmp, final)
        self.write_state(state)
        self.prune(keep=(state.get("latest_epoch"), state.get("best_epoch")))
        return final

    def restore(self, epoch: int) -> None:
        """Restore model (+ optimizer and RNG states, when present) from ``epoch``."""
        path = os.path.join(self.path(epoch), rd.CKPT_PREFIX)
        if not tf.io.gfile.exists(path + ".index"):
            raise FileNotFoundError(f"checkpoint {path!r} does not exist")
        self.checkpoint.read(path).expect_partial()

    def epochs_on_disk(self) -> List[int]:
        if not os.path.isdir(self.root):
            return []
        out = []
        for name in os.listdir(self.root):
            if name.startswith("epoch-") and name[6:].isdigit():
                out.append(int(name[6:]))
        return sorted(out)

    def prune(self, keep) -> None:
        """Delete epoch folders not in ``keep`` and stale temporary folders."""
        keep = {int(e) for e in keep if e is not None}
        for e in self.epochs_on_disk():
            if e not in keep:
                shutil.rmtree(self.path(e), ignore_errors=True)
        for name in os.listdir(self.root):
            if name.startswith(".tmp-epoch-"):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
