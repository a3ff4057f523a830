from rearec_tf.reasoning.loop import ReasoningLoop

__all__ = ["ReasoningLoop"]
