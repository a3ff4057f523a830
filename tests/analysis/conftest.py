"""A tiny synthetic dataset and untrained models for the analysis tests."""
import numpy as np
import pytest

from rearec_tf.config import Config


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory):
    """(config factory, SplitData) of 80 users with 4..30 items over 50 items: lengths
    spread over several evaluation buckets (max_len 20: widths 8, 16, 20)."""
    from rearec_tf.data import prepare

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("tiny") / "seqs.txt"
    with open(path, "w") as f:
        for u in range(1, 81):
            n = int(rng.integers(4, 31))
            items = rng.zipf(1.3, size=n) % 50 + 1
            f.write(f"{u} " + " ".join(map(str, items)) + "\n")

    def config(method="erl", **kw):
        return Config(dataset="file", data_file=str(path), data_format="sequences",
                      hidden_size=16, num_heads=1, ffn_size=32, num_layers=1, max_len=20,
                      method=method, reason_steps=2, max_reason_steps=6, **kw)

    data = prepare(config())
    return config, data


@pytest.fixture(scope="session")
def tiny_model(tiny_setup):
    """An untrained ERL model (seeded) on :func:`tiny_setup`."""
    import tensorflow as tf

    from rearec_tf.models import ReaRecModel

    config, data = tiny_setup
    cfg = config("erl")
    tf.random.set_seed(1)
    return cfg, data, ReaRecModel(cfg, data.num_items, item_counts=data.item_counts)
