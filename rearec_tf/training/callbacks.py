"""Keras callbacks of the training loop: per-epoch full-ranking validation and a guard
against non-finite losses."""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf.metrics.ranking import DEFAULT_KS, evaluate_full_ranking

NAN_HINT = ("λ too high (--erl-lambda) or temperature too low (--temperature), or no "
            "warm-up (--warmup-epochs)")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the bad epoch was not checkpointed."""

    def __init__(self, message: str, epoch: int, step: int, value: float):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.value = value


class NonFiniteLossGuard(tf.keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite.

    After ``fit`` returns, :attr:`failure` holds a :class:`NonFiniteLossError` (1-based
    epoch, 1-based step within the epoch, the loss value) or ``None``. The trainer raises
    it *before* checkpointing, so the last good epoch's checkpoint stays the latest one.
    Keras reports the running mean of the epoch's loss, so a single bad batch makes
    every later value non-finite too: the step named is the first bad one.
    """

    def __init__(self, method: str = ""):
        super().__init__()
        self.method = method
        self.failure: Optional[NonFiniteLossError] = None
        self._epoch = 0
        self.steps = 0
        """Batches run in the current (last) epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps = batch + 1
        if self.failure is not None or not logs:
            return
        for key in ("loss", "total_loss"):
            if key in logs:
                value = float(np.asarray(logs[key]))
                if not math.isfinite(value):
                    self._fail(batch, value)
                    return

    def _fail(self, batch: int, value: float) -> None:
        epoch, step = self._epoch + 1, batch + 1
        msg = (f"non-finite training loss ({value}) at epoch {epoch}, step {step}; "
               f"training stopped and epoch {epoch} was not checkpointed. Likely cause: "
               f"{NAN_HINT}; or a learning rate too high (--learning-rate).")
        self.failure = NonFiniteLossError(msg, epoch, step, value)
        self.model.stop_training = True


class ValidationCallback(tf.keras.callbacks.Callback):
    """Full-ranking validation at the end of every epoch.

    Adds ``val_<metric>`` (e.g. ``val_ndcg@20``, ``val_recall@10``, ``val_mrr``) of the
    first mode in ``modes`` to the epoch logs, and ``val_<mode>_<metric>`` for the other
    modes, so later callbacks (progress bar, TensorBoard, History) see them; place it
    before them in the callback list. :attr:`last` holds ``{mode: metrics}`` of the last
    validation, :attr:`seconds` its wall time. Skipped when the epoch's loss is
    non-finite.
    """

    def __init__(self, score_fn: Callable, dataset, modes: Sequence[str] = ("unmasked",),
                 ks: Sequence[int] = DEFAULT_KS, num_items: Optional[int] = None,
                 progress: bool = False):
        super().__init__()
        self.score_fn = score_fn
        self.dataset = dataset
        self.modes = tuple(modes)
        self.ks = tuple(ks)
        self.num_items = num_items
        self.progress = progress
        self.last: Optional[Dict[str, Dict[str, float]]] = None
        self.seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.last, self.seconds = None, 0.0
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss))):
            return
        t0 = time.perf_counter()
        res = evaluate_full_ranking(self.score_fn, self.dataset, ks=self.ks, modes=self.modes,
                                    progress=self.progress, num_items=self.num_items)
        self.seconds = time.perf_counter() - t0
        self.last = res
        for i, mode in enumerate(self.modes):
            prefix = "val_" if i == 0 else f"val_{mode}_"
            for name, value in res[mode].items():
                if name != "count":
                    logs[prefix + name] = float(value)


class EpochProgbar(tf.keras.callbacks.ProgbarLogger):
    """Keras' progress bar without its "Epoch e/E" line: the trainer fits one epoch per
    ``fit`` call and prints its own header with the real epoch count and phase."""

    def __init__(self):
        super().__init__(count_mode="steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()


def _scalar_metadata() -> bytes:
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR).SerializeToString()


class EpochScalarLogger(tf.keras.callbacks.Callback):
    """TensorBoard scalars of every epoch's logs, like Keras' ``TensorBoard`` callback
    (``LOG_DIR/train`` and ``LOG_DIR/validation``, tags ``epoch_<name>``, step = 0-based
    epoch) but with TensorFlow's own summary op, so it works without the ``tensorboard``
    package installed. Place it after :class:`ValidationCallback`."""

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writers: Dict[str, Any] = {}
        self._metadata = _scalar_metadata()

    def _writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(
                os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        groups: Dict[str, Dict[str, float]] = {"train": {}, "validation": {}}
        for key, value in (logs or {}).items():
            try:
                value = float(np.asarray(value))
            except (TypeError, ValueError):
                continue
            if key.startswith("val_"):
                groups["validation"][key[4:]] = value
            else:
                groups["train"][key] = value
        for name, values in groups.items():
            if not values:
                continue
            writer = self._writer(name)
            with writer.as_default():
                for key, value in values.items():
                    tf.summary.write(f"epoch_{key}", tf.constant(value, tf.float32),
                                     step=int(epoch), metadata=self._metadata)
            writer.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}
