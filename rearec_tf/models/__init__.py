from rearec_tf.models.rearec import ReaRecModel

__all__ = ["ReaRecModel"]
