"""End-to-end: ``python -m rearec_tf.train`` then ``python -m rearec_tf.evaluate`` on a
tiny real slice (300 Beauty users, d=16, max_len 10, 2 epochs)."""
import json
import math
import os
import shutil

import numpy as np
import pytest

from rearec_tf import evaluate, run_dir as rd, train
from rearec_tf.config import Config
from rearec_tf.metrics.ranking import metric_names

MODES = ("unmasked", "masked")


def _json(path):
    with open(path) as f:
        return json.load(f)


def _weights(run, which="latest"):
    return rd.load_run(str(run), which)[2].get_weights()


@pytest.fixture(scope="module")
def base_run(tiny_flags, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "base"
    assert train.main(tiny_flags(run)) == 0
    return run


def test_run_dir_contents(base_run):
    for name in (rd.CONFIG, rd.VOCABULARY, rd.ITEM_COUNTS, rd.HISTORY, rd.METRICS, rd.LOGS):
        assert os.path.exists(base_run / name), name
    state = rd.read_state(str(base_run))
    assert state["latest_epoch"] == 2 and state["best_epoch"] in (1, 2)
    kept = sorted(os.listdir(base_run / rd.CHECKPOINTS))
    assert kept == sorted({"state.json", f"epoch-{state['best_epoch']:04d}", "epoch-0002"})
    for sub in ("train", "validation"):  # TensorBoard event files
        assert os.listdir(base_run / rd.LOGS / sub)

    history = _json(base_run / rd.HISTORY)
    assert [h["epoch"] for h in history] == [1, 2] and history == state["history"]
    for h in history:
        assert h["samples_per_sec"] > 0 and h["seconds"] > 0 and math.isfinite(h["loss"])
        assert 0 <= h["val_ndcg@20"] <= 1 and h["phase"] == "base"

    metrics = _json(base_run / rd.METRICS)
    assert metrics["epoch"] == state["best_epoch"]
    assert metrics["best_valid_metric"] == pytest.approx(state["best_metric"])
    for split in ("valid", "test"):
        for mode in MODES:
            m = metrics[split][mode]
            assert m["count"] == 300
            for name in metric_names():
                assert 0.0 <= m[name] <= 1.0, (split, mode, name)
            assert m["recall@50"] >= m["recall@20"] >= m["recall@10"] >= m["recall@5"]
    # the selection metric was computed on valid in the unmasked mode
    best = state["history"][state["best_epoch"] - 1]
    assert metrics["valid"]["unmasked"]["ndcg@20"] == pytest.approx(best["val_ndcg@20"])


def test_evaluate_reproduces_metrics(base_run, tmp_path):
    out = tmp_path / "eval.json"
    assert evaluate.main(["--run-dir", str(base_run), "--output", str(out)]) == 0
    doc = _json(out)
    assert doc["metrics"] == _json(base_run / rd.METRICS)["test"]
    assert doc["epoch"] == rd.read_state(str(base_run))["best_epoch"]


def test_refuses_to_overwrite(base_run, tiny_flags, capsys):
    before = (base_run / rd.CHECKPOINTS / rd.STATE).stat().st_mtime_ns
    assert train.main(tiny_flags(base_run)) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--resume" in err and "Traceback" not in err
    assert (base_run / rd.CHECKPOINTS / rd.STATE).stat().st_mtime_ns == before


def test_resume_equals_uninterrupted(base_run, tiny_flags, tmp_path):
    run = tmp_path / "resumed"
    assert train.main(tiny_flags(run, epochs=1)) == 0
    first = rd.read_state(str(run))
    assert first["latest_epoch"] == 1
    # --resume: the run's config.json wins, --epochs may be raised.
    assert train.main(tiny_flags(run, "--resume", epochs=2)) == 0
    state = rd.read_state(str(run))
    assert state["latest_epoch"] == 2
    assert state["history"][0] == first["history"][0]  # epoch 1 was not trained again
    assert Config.load(str(run / rd.CONFIG)).epochs == 2
    # Shuffling depends on (seed, epoch) and the dropout RNG state is checkpointed:
    # the resumed run repeats the uninterrupted one bit for bit on CPU.
    for a, b in zip(_weights(run), _weights(base_run)):
        np.testing.assert_array_equal(a, b)
    assert [h["loss"] for h in state["history"]] == \
        [h["loss"] for h in rd.read_state(str(base_run))["history"]]
    assert _json(run / rd.METRICS)["test"] == _json(base_run / rd.METRICS)["test"]


def test_resume_with_lower_epochs_ends_the_run_on_a_budget(base_run, tiny_flags, tmp_path):
    run = tmp_path / "budget"
    shutil.copytree(base_run, run)
    os.remove(run / rd.METRICS)  # as if killed after epoch 2 of a longer run
    cfg = Config.load(str(run / rd.CONFIG))
    cfg.replace(epochs=50).save(str(run / rd.CONFIG))
    assert train.main(tiny_flags(run, "--resume", epochs=1)) == 2  # cannot un-train
    assert train.main(tiny_flags(run, "--resume", epochs=2)) == 0
    assert rd.read_state(str(run))["latest_epoch"] == 2
    assert _json(run / rd.METRICS)["test"] == _json(base_run / rd.METRICS)["test"]


def test_interrupt_message(base_run, tiny_flags, tmp_path, monkeypatch, capsys):
    from rearec_tf.training.trainer import Trainer

    run = tmp_path / "interrupted"
    shutil.copytree(base_run, run)
    original = Trainer._train_dataset

    def interrupt(self, epoch):
        if epoch >= 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_dataset", interrupt)
    assert train.main(tiny_flags(run, "--resume", epochs=3)) == 130
    err = capsys.readouterr().err
    assert "last checkpoint is epoch 2" in err
    assert f"python -m rearec_tf.train --run-dir {run} --resume" in err
    assert rd.read_state(str(run))["latest_epoch"] == 2


def test_missing_dataset(tmp_path, capsys):
    run = tmp_path / "run"
    rc = train.main(["--dataset", "beauty", "--data-dir", str(tmp_path / "nowhere"),
                     "--run-dir", str(run), "--verbose", "0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "nowhere" in err
    assert not run.exists()


def test_nan_loss_keeps_last_good_checkpoint(tiny_flags, tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    from rearec_tf.models import ReaRecModel

    # From the 4th batch of the 2nd epoch on, the loss (and so every gradient) is NaN.
    first_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
    original_loss, original_set_epoch = ReaRecModel.compute_loss, ReaRecModel.set_epoch

    def set_epoch(self, epoch):
        first_step.assign(self.optimizer.iterations if epoch == 1 else -1)
        return original_set_epoch(self, epoch)

    def diverging(self, inputs, training=False):
        loss = original_loss(self, inputs, training)
        bad = (first_step >= 0) & (self.optimizer.iterations >= first_step + 3)
        return loss * tf.where(bad, float("nan"), 1.0)

    monkeypatch.setattr(ReaRecModel, "set_epoch", set_epoch)
    monkeypatch.setattr(ReaRecModel, "compute_loss", diverging)
    run = tmp_path / "nan"
    assert train.main(tiny_flags(run)) == train.EXIT_DIVERGED == 3
    err = capsys.readouterr().err
    assert "epoch 2, step 4" in err
    assert "--erl-lambda" in err and "--temperature" in err and "--warmup-epochs" in err
    assert "epoch 1" in err and "intact" in err
    state = rd.read_state(str(run))
    assert state["latest_epoch"] == 1 and len(state["history"]) == 1
    assert not (run / rd.CHECKPOINTS / "epoch-0002").exists()
    assert not (run / rd.METRICS).exists()
    weights = _weights(run, "latest")
    assert all(np.isfinite(w).all() for w in weights)
