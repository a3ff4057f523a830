"""Per-step metrics, oracle, steps sweep and plots of rearec_tf.analysis on a tiny model."""
import numpy as np
import pytest

from rearec_tf import analysis
from rearec_tf.data.pipeline import eval_dataset
from rearec_tf.training.evaluation import evaluate_model


def test_step_metrics_oracle_and_order(tiny_model):
    cfg, data, model = tiny_model
    res = analysis.step_metrics(model, cfg, data.test, batch_size=16)
    assert res["steps"] == 2 and res["count"] == len(data.test)
    for mode in ("unmasked", "masked"):
        m = res["metrics"][mode]
        assert set(m) == {"step0", "step1", "step2", "oracle", "aggregate"}
        pi = res["per_instance"][mode]
        for name in ("ndcg@20", "recall@20", "ndcg@10", "mrr"):
            steps = np.stack([pi[f"step{k}"][name] for k in range(3)], 1)
            # the oracle is the per-instance best step: >= every step, per instance
            np.testing.assert_array_equal(pi["oracle"][name], steps.max(1))
            for k in range(3):
                assert m["oracle"][name] >= m[f"step{k}"][name]
        assert len(res["best_step_share"][mode]) == 3
    # bucketed batches are put back in EvalSet order: equal to unbucketed evaluation
    flat = analysis.step_metrics(model, cfg, data.test, batch_size=16, buckets=False)
    for mode in ("unmasked", "masked"):
        for key in ("step0", "step2", "aggregate", "oracle"):
            for name, arr in res["per_instance"][mode][key].items():
                np.testing.assert_allclose(arr, flat["per_instance"][mode][key][name],
                                           atol=1e-6)
    # the aggregate is the method's prediction, as the training's evaluation computes it
    ref = evaluate_model(model, eval_dataset(data.test, cfg.max_len, 16),
                         num_items=data.vocab.size)
    for mode in ("unmasked", "masked"):
        for name in ("ndcg@20", "recall@10", "mrr"):
            assert res["metrics"][mode]["aggregate"][name] == pytest.approx(ref[mode][name],
                                                                            abs=1e-6)


def test_steps_sweep_entries_and_values(tiny_model):
    cfg, data, model = tiny_model
    sw = analysis.steps_sweep(model, cfg, data.test, max_steps=4, batch_size=32)
    assert sw["steps"] == [0, 1, 2, 3, 4] and sorted(sw["metrics"]) == ["0", "1", "2", "3", "4"]
    for k in (0, 3):
        ref = evaluate_model(model, eval_dataset(data.test, cfg.max_len, 32), steps=k,
                             num_items=data.vocab.size)
        for mode in ("unmasked", "masked"):
            assert sw["metrics"][str(k)][mode]["ndcg@20"] == pytest.approx(
                ref[mode]["ndcg@20"], abs=1e-6)
    with pytest.raises(ValueError, match="max_reason_steps"):
        analysis.steps_sweep(model, cfg, data.test, max_steps=7)


def test_plots_write_pngs(tiny_model, tmp_path):
    cfg, data, model = tiny_model
    res = analysis.step_metrics(model, cfg, data.test, batch_size=32)
    sw = analysis.steps_sweep(model, cfg, data.test, max_steps=3, batch_size=32)
    pi = res["per_instance"]["masked"]
    cmp = analysis.compare_groups(pi["step0"], pi["aggregate"], data.test, data.item_counts)
    paths = [analysis.plot_step_metrics(res, str(tmp_path / "steps.png")),
             analysis.plot_group_gains({"ERL": cmp, "r2": analysis.compare_groups(
                 pi["step0"], pi["step2"], data.test, data.item_counts)},
                 str(tmp_path / "len.png"), grouping="length"),
             analysis.plot_group_gains({"ERL": cmp}, str(tmp_path / "pop.png"),
                                       grouping="popularity"),
             analysis.plot_steps_sweep({"ERL": sw}, str(tmp_path / "sweep.png"),
                                       base_value=0.01)]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
