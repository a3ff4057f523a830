"""Evaluation metrics of rearec-tf."""
from rearec_tf.metrics.ranking import (  # noqa: F401
    DEFAULT_KS,
    MODES,
    RankingAccumulator,
    evaluate_full_ranking,
    metric_names,
    metrics_from_counts,
    ranking_counts,
)

__all__ = [
    "DEFAULT_KS",
    "MODES",
    "RankingAccumulator",
    "evaluate_full_ranking",
    "metric_names",
    "metrics_from_counts",
    "ranking_counts",
]
