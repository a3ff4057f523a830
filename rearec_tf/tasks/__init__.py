"""Training objectives: the shared recommendation loss, base next-item CE, ERL, PRL."""
from rearec_tf.tasks.erl import ERLObjective, kl_part, pairwise_kl
from rearec_tf.tasks.next_item import NextItemObjective
from rearec_tf.tasks.prl import PRLObjective, reasoning_contrastive_loss, step_temperatures
from rearec_tf.tasks.recommendation import RecommendationLoss


def build_objective(config, rec_loss: RecommendationLoss):
    """The objective of ``config.method`` (base, erl, prl) at ``config.tau``."""
    if config.method == "base":
        return NextItemObjective(rec_loss, temperature=config.tau, name="objective")
    if config.method == "erl":
        return ERLObjective(rec_loss, temperature=config.tau, kl_weight=config.erl_lambda,
                            rec_variant=config.erl_rec_loss, pairs=config.erl_pairs,
                            name="objective")
    if config.method == "prl":
        return PRLObjective(rec_loss, temperature=config.tau, alpha=config.prl_alpha,
                            pl_weight=config.prl_pl_weight, cl_weight=config.prl_cl_weight,
                            step_weighting=config.prl_step_weighting,
                            noise_std=config.prl_noise_std, name="objective")
    raise ValueError(f"unknown method {config.method!r}")


__all__ = ["RecommendationLoss", "NextItemObjective", "ERLObjective", "PRLObjective",
           "build_objective", "pairwise_kl", "kl_part", "step_temperatures",
           "reasoning_contrastive_loss"]
