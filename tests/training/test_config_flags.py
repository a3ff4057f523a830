"""Config flags of ``python -m rearec_tf.train``: every field is a flag documented by its
docstring and its own default; a flag left out keeps the --config/--preset value."""
import argparse

from rearec_tf import train
from rearec_tf.config import Config, field_docs


def test_help_shows_field_docs_and_field_defaults():
    text = train.build_parser().format_help()
    assert "--micro-batches MICRO_BATCHES" in text
    one_line = " ".join(text.split())
    assert ("accumulate their gradients before the one optimizer update: the same update as "
            "the whole batch for losses that are means over samples (SASRec, ERL, full "
            "softmax), with the activation memory of a") in one_line
    assert "batch. (default 1) --steps-per-epoch" in one_line
    assert "(default: None)" not in one_line  # argparse's own default would mislead
    docs = field_docs(Config)
    assert docs["dataset"].startswith("Named dataset") and "hidden_size" not in docs


def test_absent_flags_keep_preset_values_given_ones_override():
    p = argparse.ArgumentParser()
    Config.add_arguments(p)
    args = p.parse_args(["--erl-lambda", "0.01", "--bucket-by-length", "false"])
    assert not hasattr(args, "hidden_size")
    cfg = Config.from_args(args, Config.preset("small"))
    assert cfg.hidden_size == Config.preset("small").hidden_size == 64
    assert cfg.erl_lambda == 0.01 and cfg.bucket_by_length is False
