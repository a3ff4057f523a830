"""Training of rearec-tf models: the epoch loop, callbacks, checkpoints, evaluation.

``python -m rearec_tf.train`` is the command line; :func:`train` the Python API.
"""
from rearec_tf.training.callbacks import (NAN_HINT, NonFiniteLossError, NonFiniteLossGuard,
                                          ValidationCallback)
from rearec_tf.training.checkpoints import CheckpointManager, random_generators
from rearec_tf.training.evaluation import (evaluate_model, make_score_fn,
                                           make_step_score_fns, metric_ks)
from rearec_tf.training.trainer import (JitCompileError, RunDirError, Trainer, TrainResult,
                                        build_model, train)

__all__ = [
    "NAN_HINT", "NonFiniteLossError", "NonFiniteLossGuard", "ValidationCallback",
    "CheckpointManager", "random_generators",
    "evaluate_model", "make_score_fn", "make_step_score_fns", "metric_ks",
    "JitCompileError", "RunDirError", "Trainer", "TrainResult", "build_model", "train",
]
