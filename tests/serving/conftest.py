"""Fixtures of the serving tests: a tiny trained run on a slice of LastFM, its export,
and a running ``python -m serving.server`` subprocess on 127.0.0.1."""
from __future__ import annotations

import os
import pathlib
import sys

import numpy as np
import pytest

import rearec_tf  # noqa: F401
from rearec_tf.config import Config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the serving/ package lives at the repository root
    sys.path.insert(0, str(REPO_ROOT))
N_USERS = 200

from _serving_ref import ServerProcess  # noqa: E402


def make_run(run_dir: pathlib.Path, data_file: pathlib.Path, method: str = "prl",
             train_batches: int = 6, seed: int = 0, **overrides):
    """Train a tiny model for a few batches and write a run directory (run_dir.py layout).
    ``overrides``: other Config fields (e.g. ``backbone``, ``item_features``).

    Returns ``(config, split, model)``."""
    import tensorflow as tf

    from rearec_tf import run_dir as rd
    from rearec_tf.data import prepare, train_dataset
    from rearec_tf.models import ReaRecModel

    cfg = Config(dataset="file", data_file=str(data_file), data_format="sequences",
                 hidden_size=16, num_layers=1, num_heads=2, ffn_size=32, max_len=20,
                 hidden_dropout=0.1, attention_dropout=0.1, input_dropout=0.1,
                 method=method, reason_steps=2, max_reason_steps=4, batch_size=64,
                 epochs=1, seed=seed, **overrides)
    split = prepare(cfg)
    features = None
    if cfg.backbone == "feature":
        from rearec_tf.data.item_features import load_item_features

        features = load_item_features(cfg, split.vocab)
    tf.keras.utils.set_random_seed(seed)
    model = ReaRecModel(cfg, num_items=split.num_items, item_counts=split.item_counts,
                        item_features=features)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    model.fit(train_dataset(split, cfg.max_len, cfg.batch_size, mode="prefix", seed=seed)
              .take(train_batches), epochs=1, verbose=0)
    os.makedirs(run_dir, exist_ok=True)
    cfg.save(str(run_dir / rd.CONFIG))
    split.vocab.save(str(run_dir / rd.VOCABULARY))
    np.save(str(run_dir / rd.ITEM_COUNTS), split.item_counts)
    ckpt = rd.checkpoint_dir(str(run_dir), 1)
    tf.train.Checkpoint(model=model).write(os.path.join(ckpt, rd.CKPT_PREFIX))
    rd.write_json(os.path.join(run_dir, rd.CHECKPOINTS, rd.STATE),
                  {"latest_epoch": 1, "best_epoch": 1})
    return cfg, split, model


@pytest.fixture(scope="session")
def lastfm_slice(data_slice) -> pathlib.Path:
    return data_slice("lastfm/LastFM.txt", N_USERS)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, lastfm_slice):
    """``(run_dir, config, split, model)`` of a tiny PRL model."""
    run_dir = tmp_path_factory.mktemp("run") / "prl"
    cfg, split, model = make_run(run_dir, lastfm_slice, method="prl")
    return run_dir, cfg, split, model


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained_run):
    """``(base_path, version_path)``: the trained run exported as version 1 via the CLI."""
    from rearec_tf import export

    run_dir = trained_run[0]
    base = tmp_path_factory.mktemp("models") / "rearec"
    assert export.main(["--run-dir", str(run_dir), "--export-dir", str(base)]) == 0
    return base, base / "1"


@pytest.fixture(scope="session")
def exported_xla(tmp_path_factory, trained_run):
    """The same run exported with ``--xla`` (encoder + reasoning loop as one XLA cluster)."""
    from rearec_tf import export

    base = tmp_path_factory.mktemp("models_xla") / "rearec"
    assert export.main(["--run-dir", str(trained_run[0]), "--export-dir", str(base), "--xla"]) == 0
    return base, base / "1"


@pytest.fixture(scope="module")
def server(exported):
    base, _ = exported
    srv = ServerProcess(base, rest=True)
    yield srv
    assert srv.stop() == 0, "the server did not exit 0 on SIGTERM"

