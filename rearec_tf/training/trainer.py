"""The training loop: one ``model.fit`` per epoch, validation, early stopping, atomic
checkpoints, exact resume, and the final evaluation of the best checkpoint.

::

    from rearec_tf.training import train
    result = train(config, "runs/beauty-erl")          # -> TrainResult
    result = train(config, "runs/beauty-erl", resume=True)

Per epoch ``e`` (0-based): ``model.set_epoch(e)`` (phase switches: warm-up, reasoning,
PRL contrastive), ``fit`` on the ``(seed, e)`` permutation of the training samples,
full-ranking validation (``config.select_metric`` in the ``config.select_masked`` mode),
checkpoint ``epoch-{e+1:04d}`` + ``state.json``, early stopping after
``config.patience`` epochs without a strictly better validation metric. At the end the
best checkpoint is restored and valid + test are evaluated in both masking modes
(``metrics.json``).

Determinism: ``tf.keras.utils.set_random_seed(config.seed)``; the shuffling of epoch
``e`` depends only on ``(seed, e)``; the dropout layers draw from ``tf.random.Generator``
s whose states are checkpointed. A run resumed from epoch ``e`` therefore repeats the
uninterrupted run exactly on CPU. Known exception: PRL's contrastive noise comes from
the legacy stateful ``tf.random.normal`` op (in ``ReasoningLoop``), whose stream restarts
whenever the train function is rebuilt (phase change or resume), so a PRL run resumed
during its contrastive phase draws different noise than the uninterrupted run.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf import run_dir as rd
from rearec_tf.config import Config
from rearec_tf.metrics.ranking import DEFAULT_KS, MODES
from rearec_tf.training.callbacks import (EpochProgbar, EpochScalarLogger,
                                          NonFiniteLossError, NonFiniteLossGuard,
                                          ValidationCallback)
from rearec_tf.training.checkpoints import CheckpointManager
from rearec_tf.training.evaluation import evaluate_model, make_score_fn, metric_ks

logger = logging.getLogger("rearec_tf.training")


class _UnusedGradientFilter(logging.Filter):
    """Silences Keras' "Gradients do not exist for variables" warning: phases that do
    not reason (base, warm-up) legitimately leave the reasoning position table unused."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Gradients do not exist for variables" not in record.getMessage()


_FILTER = _UnusedGradientFilter()


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (e.g. not empty and no resume)."""


class JitCompileError(RuntimeError):
    """``jit_compile=True`` but XLA cannot compile the train step."""


@dataclass
class TrainResult:
    run_dir: str
    state: Dict[str, Any]
    history: List[Dict[str, Any]]
    metrics: Dict[str, Any]
    epochs_trained: int
    """Epochs trained by this call (0 when resuming a finished run)."""
    start_epoch: int
    """0-based index of the first epoch trained by this call."""
    model: Any = field(default=None, repr=False)


def build_model(config: Config, num_items: int, item_counts=None, item_features=None):
    """``(model, optimizer)``, seeded, compiled, with every variable (including Adam's
    slots) created, so a checkpoint restores completely. Dropout masks and PRL noise are
    stateless, keyed by ``(seed, optimizer.iterations)`` (:mod:`rearec_tf.layers.randomness`),
    so restoring the optimizer's step counter is all an exact resume needs.
    ``item_features`` (:class:`rearec_tf.data.item_features.ItemFeatures`): required by
    the ``feature`` backbone."""
    from rearec_tf.models import ReaRecModel

    tf.keras.utils.set_random_seed(config.seed)
    model = ReaRecModel(config, num_items=num_items, item_counts=item_counts,
                        item_features=item_features)
    model({"item_ids": tf.zeros([1, config.max_len], tf.int32)})
    optimizer = tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
    optimizer.build(model.trainable_variables)
    model.compile(optimizer=optimizer, jit_compile=bool(config.jit_compile))
    return model, optimizer


def _is_nonempty_dir(path: str) -> bool:
    return os.path.isdir(path) and bool(os.listdir(path))


def _last(values) -> float:
    v = values[-1] if isinstance(values, (list, tuple)) else values
    return float(np.asarray(v))


class Trainer:
    """Trains ``config`` into ``run_dir`` (see the module docstring)."""

    def __init__(self, config: Config, run_dir: str, split=None, resume: bool = False,
                 verbose: int = 1, data_dir: Optional[str] = None):
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.verbose = verbose
        self.data_dir = data_dir
        self.split = split
        self.item_features = None
        self.model = None
        self.optimizer = None
        self.manager: Optional[CheckpointManager] = None
        self.state: Optional[Dict[str, Any]] = None

    # ---------------------------------------------------------------- run dir
    def _prepare_run_dir(self) -> None:
        from rearec_tf.data import Vocabulary, prepare

        run_dir, cfg = self.run_dir, self.config
        self.state = rd.read_state(run_dir)
        if _is_nonempty_dir(run_dir) and not self.resume:
            raise RunDirError(
                f"run directory {run_dir!r} is not empty; pass --resume to continue the run "
                "in it, or choose another --run-dir (nothing was overwritten)")
        if self.split is None:  # before creating anything: the data may be missing
            self.split = prepare(cfg, data_dir=self.data_dir or cfg.data_dir)
        if cfg.backbone == "feature":  # so are the item features
            from rearec_tf.data.item_features import load_item_features

            self.item_features = load_item_features(cfg, self.split.vocab,
                                                    data_dir=self.data_dir or cfg.data_dir)
        os.makedirs(run_dir, exist_ok=True)
        vocab_path = os.path.join(run_dir, rd.VOCABULARY)
        if os.path.exists(vocab_path):
            if Vocabulary.load(vocab_path) != self.split.vocab:
                raise RunDirError(
                    f"the item vocabulary of {run_dir!r} differs from the one of the data "
                    f"now read for dataset {cfg.dataset!r}: the data changed since the run "
                    "started; resume with the same data or start a new run")
        else:
            self.split.vocab.save(vocab_path)
        cfg.save(os.path.join(run_dir, rd.CONFIG))
        counts_path = os.path.join(run_dir, rd.ITEM_COUNTS)
        if not os.path.exists(counts_path):
            tmp = counts_path + f".tmp-{os.getpid()}.npy"
            np.save(tmp, np.asarray(self.split.item_counts))
            os.replace(tmp, counts_path)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from rearec_tf.data.pipeline import default_buckets, eval_dataset

        cfg = self.config
        self.model, self.optimizer = build_model(cfg, self.split.vocab.num_items,
                                                 self.split.item_counts,
                                                 item_features=self.item_features)
        self.manager = CheckpointManager(self.run_dir, self.model, self.optimizer)
        self.buckets = default_buckets(cfg.max_len) if cfg.bucket_by_length else None
        if cfg.bucket_by_length and cfg.sample_mode == "all":
            logger.warning(
                "sample_mode='all' with length buckets: each batch's loss is the mean over its "
                "positions, so short histories weigh more than in shuffled batches (on ML-1M "
                "it trains slower and ends lower, see BENCHMARKS.md); --bucket-by-length false "
                "trains as the SASRec-CE literature does (the ml1m preset sets it)")
        self.valid_ds = eval_dataset(self.split.valid, cfg.max_len, cfg.eval_batch_size,
                                     buckets=self.buckets)
        self.test_ds = eval_dataset(self.split.test, cfg.max_len, cfg.eval_batch_size,
                                    buckets=self.buckets)
        self.ks = metric_ks(cfg.select_metric, DEFAULT_KS)
        self.select_mode = cfg.select_mode
        self.select_key = f"val_{cfg.select_key}"

    def _train_dataset(self, epoch: int):
        from rearec_tf.data.pipeline import train_dataset

        cfg = self.config
        ds = train_dataset(self.split, cfg.max_len, cfg.batch_size, mode=cfg.sample_mode,
                           seed=cfg.seed, shuffle=True, epoch=epoch, buckets=self.buckets)
        if cfg.steps_per_epoch:
            ds = ds.take(int(cfg.steps_per_epoch))
        return ds

    def _epoch_samples(self, steps: int) -> int:
        """Training samples of an epoch of ``steps`` batches (with ``steps_per_epoch``
        and length buckets an upper bound: a bucket's last batch may be smaller)."""
        from rearec_tf.data.pipeline import num_train_samples

        cfg = self.config
        n = num_train_samples(self.split, cfg.sample_mode)
        if cfg.steps_per_epoch:
            n = min(n, steps * cfg.batch_size)
        return n

    def _new_state(self) -> Dict[str, Any]:
        cfg = self.config
        return {"latest_epoch": None, "best_epoch": None, "best_metric": None,
                "select_metric": cfg.select_metric, "select_mode": self.select_mode,
                "bad_epochs": 0, "stopped_early": False, "history": [],
                "rng": {"seed": cfg.seed,
                        "shuffle": "stateless permutation per (seed, epoch)",
                        "dropout": "stateless, keyed by (seed, optimizer.iterations)"}}

    # ------------------------------------------------------------------- loop
    def run(self) -> TrainResult:
        tf_logger = tf.get_logger()
        if _FILTER not in tf_logger.filters:
            tf_logger.addFilter(_FILTER)
        self._prepare_run_dir()
        self._setup()
        cfg, model = self.config, self.model
        state = self.state
        if state is not None and state.get("latest_epoch"):
            self.manager.restore(state["latest_epoch"])
            if self.verbose:
                print(f"resuming {self.run_dir} after epoch {state['latest_epoch']} "
                      f"(best epoch {state['best_epoch']}, "
                      f"{cfg.select_metric}={state['best_metric']})", flush=True)
        else:
            state = self._new_state()
        self.state = state
        history: List[Dict[str, Any]] = list(state.get("history", []))
        start = int(state.get("latest_epoch") or 0)

        guard = NonFiniteLossGuard(cfg.method)
        validation = ValidationCallback(make_score_fn(model), self.valid_ds,
                                        modes=(self.select_mode,), ks=self.ks,
                                        num_items=self.split.vocab.size)
        progbar = EpochProgbar()
        tensorboard = EpochScalarLogger(os.path.join(self.run_dir, rd.LOGS))
        callbacks = [guard, validation, progbar, tensorboard]
        try:
            trained = self._loop(state, history, start, callbacks)
        finally:
            tensorboard.close()
        if state.get("best_epoch") is None:
            raise RuntimeError("no epoch was trained (epochs=0?); nothing to evaluate")
        metrics = self.final_evaluation()
        return TrainResult(self.run_dir, state, history, metrics, trained, start, model)

    def _loop(self, state, history, start, callbacks) -> int:
        cfg, model = self.config, self.model
        guard, validation = callbacks[0], callbacks[1]
        trained = 0
        epoch = start
        while epoch < cfg.epochs and not state.get("stopped_early"):
            model.set_epoch(epoch)
            if self.verbose:
                print(f"Epoch {epoch + 1}/{cfg.epochs} (phase {model.phase})", flush=True)
            t0 = time.perf_counter()
            try:
                fit = model.fit(self._train_dataset(epoch), epochs=epoch + 1,
                                initial_epoch=epoch, callbacks=callbacks,
                                verbose=self.verbose)
            except tf.errors.InvalidArgumentError as e:
                if cfg.jit_compile and ("XLA" in str(e) or "tf2xla" in str(e)):
                    raise JitCompileError(
                        f"XLA could not compile the {model.phase!r}-phase train step of "
                        f"method={cfg.method!r} (jit_compile=True): "
                        f"{str(e).strip().splitlines()[0]} ... Rerun with --jit-compile false."
                    ) from e
                raise
            seconds = time.perf_counter() - t0
            if guard.failure is not None:
                raise guard.failure
            logs = {k: _last(v) for k, v in fit.history.items() if v}
            n_steps = guard.steps
            n_samples = self._epoch_samples(n_steps)
            train_seconds = max(seconds - validation.seconds, 1e-9)
            entry = {"epoch": epoch + 1, "phase": model.phase, **logs,
                     "seconds": seconds, "train_seconds": train_seconds,
                     "val_seconds": validation.seconds, "samples": n_samples,
                     "steps": n_steps, "samples_per_sec": n_samples / train_seconds}
            metric = logs.get(self.select_key)
            if metric is None or not math.isfinite(metric):
                raise RuntimeError(f"validation produced no finite {self.select_key} "
                                   f"(logs: {sorted(logs)})")
            best = state.get("best_metric")
            if best is None or metric > best:
                state.update(best_epoch=epoch + 1, best_metric=metric, bad_epochs=0)
            else:
                state["bad_epochs"] = int(state.get("bad_epochs", 0)) + 1
            entry["best_epoch"] = state["best_epoch"]
            history.append(entry)
            state["latest_epoch"] = epoch + 1
            state["history"] = history
            if cfg.patience and cfg.patience > 0 and state["bad_epochs"] >= cfg.patience:
                state["stopped_early"] = True
            self.manager.save(epoch + 1, state)
            rd.write_json(os.path.join(self.run_dir, rd.HISTORY), history)
            trained += 1
            epoch += 1
            if state["stopped_early"] and self.verbose:
                print(f"early stopping: no better validation {cfg.select_metric} for "
                      f"{state['bad_epochs']} epochs (best epoch {state['best_epoch']})",
                      flush=True)
        return trained

    # ------------------------------------------------------------- evaluation
    def final_evaluation(self) -> Dict[str, Any]:
        """Restore the best checkpoint; valid + test metrics in both modes."""
        cfg, state = self.config, self.state
        best = int(state["best_epoch"])
        self.manager.restore(best)
        out: Dict[str, Any] = {
            "checkpoint": "best", "epoch": best, "select_metric": cfg.select_metric,
            "select_mode": self.select_mode, "best_valid_metric": state["best_metric"],
            "method": cfg.method, "dataset": cfg.dataset, "reason_steps": cfg.train_steps,
            "sample_mode": cfg.sample_mode,
        }
        for split_name, ds in (("valid", self.valid_ds), ("test", self.test_ds)):
            out[split_name] = evaluate_model(self.model, ds, modes=MODES, ks=self.ks,
                                             num_items=self.split.vocab.size,
                                             progress=bool(self.verbose == 1))
        rd.write_json(os.path.join(self.run_dir, rd.METRICS), out)
        if self.verbose:
            t = out["test"]
            print(f"best epoch {best}: test ndcg@20 unmasked {t['unmasked'].get('ndcg@20')} "
                  f"masked {t['masked'].get('ndcg@20')}", flush=True)
        return out


def train(config: Config, run_dir: str, resume: bool = False, split=None, verbose: int = 1,
          data_dir: Optional[str] = None) -> TrainResult:
    """Train ``config`` into ``run_dir``; see :class:`Trainer`."""
    return Trainer(config, run_dir, split=split, resume=resume, verbose=verbose,
                   data_dir=data_dir).run()


__all__ = ["JitCompileError", "NonFiniteLossError", "RunDirError", "TrainResult", "Trainer",
           "build_model", "train"]
