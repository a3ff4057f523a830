"""Make ``tf.keras`` resolve to tf-keras (Keras 2) before TensorFlow is imported.

TensorFlow Recommenders 0.7.7 refuses Keras 3, so the package pins the legacy Keras
API for the whole process. This module must be imported before ``tensorflow``; the
package ``__init__`` does that. If TensorFlow was already imported with Keras 3 we
fail loudly instead of mixing the two Keras implementations in one model.
"""
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def check_keras() -> None:
    """Raise if ``tf.keras`` is not tf-keras (Keras 2)."""
    import tensorflow as tf  # noqa: F401  (imported after the variable is set)

    name = getattr(tf.keras, "__name__", "")
    if not name.startswith("tf_keras"):
        raise ImportError(
            "rearec_tf needs tf.keras to be tf-keras (Keras 2), but TensorFlow was "
            f"imported before rearec_tf with Keras 3 ({name!r}). Import rearec_tf first, "
            "or set TF_USE_LEGACY_KERAS=1 in the environment, and `pip install tf-keras`."
        )


if "tensorflow" in sys.modules:  # pragma: no cover - depends on the caller
    check_keras()
