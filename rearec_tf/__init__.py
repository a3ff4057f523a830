"""rearec-tf: ReaRec latent multi-step reasoning for sequential recommendation in TensorFlow.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported so
that ``tf.keras`` is tf-keras (Keras 2), which TensorFlow Recommenders requires.
"""
from rearec_tf import _env  # noqa: F401  (must run before tensorflow is imported)

__version__ = "0.1.0"
