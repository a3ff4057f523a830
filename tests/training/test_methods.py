"""ERL and PRL through the training loop, including their phase switches."""
import json

from rearec_tf import evaluate, run_dir as rd, train


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_erl_warmup_then_reasoning_and_per_step_eval(tiny_flags, tmp_path, capsys):
    run = tmp_path / "erl"
    assert train.main(tiny_flags(run, "--warmup-epochs", "1", method="erl")) == 0
    history = _json(run / rd.HISTORY)
    assert [h["phase"] for h in history] == ["warmup", "reason"]
    assert history[0]["loss_kl"] == 0.0 and history[1]["loss_kl"] > 0.0

    out = tmp_path / "per_step.json"
    assert evaluate.main(["--run-dir", str(run), "--per-step", "--steps-sweep", "0..2",
                          "--output", str(out)]) == 0
    doc = _json(out)
    metrics = _json(run / rd.METRICS)
    assert doc["metrics"] == metrics["test"] and doc["steps"] == 2
    for mode in ("unmasked", "masked"):
        per = doc["per_step"][mode]
        assert set(per) == {"step0", "step1", "step2", "oracle", "aggregate"}
        assert per["aggregate"] == metrics["test"][mode]  # ERL: mean of r0..r2
        for name in ("ndcg@20", "recall@20", "mrr"):
            assert per["oracle"][name] >= max(per[f"step{k}"][name] for k in range(3)) - 1e-12
        assert doc["steps_sweep"]["2"][mode] == metrics["test"][mode]
    assert set(doc["steps_sweep"]) == {"0", "1", "2"}

    # K' chosen on validation: the run's selection metric (unmasked N@20 here), ties to the
    # smaller K'; the test metrics are those of the chosen K'
    valid, chosen = tmp_path / "valid.json", tmp_path / "chosen.json"
    assert evaluate.main(["--run-dir", str(run), "--split", "valid", "--steps-sweep", "0..2",
                          "--output", str(valid)]) == 0
    assert evaluate.main(["--run-dir", str(run), "--choose-steps", "0..2",
                          "--output", str(chosen)]) == 0
    scores = {k: _json(valid)["steps_sweep"][str(k)]["unmasked"]["ndcg@20"] for k in range(3)}
    best = max(scores, key=lambda k: (scores[k], -k))
    cdoc = _json(chosen)
    assert cdoc["choose_steps"]["values"] == {str(k): v for k, v in scores.items()}
    assert cdoc["choose_steps"]["chosen"] == best == cdoc["steps"]
    assert cdoc["metrics"] == doc["steps_sweep"][str(best)]

    assert evaluate.main(["--run-dir", str(run), "--steps", "99"]) == 2
    assert "max_reason_steps" in capsys.readouterr().err


def test_prl_warmup_then_contrastive(tiny_flags, tmp_path):
    run = tmp_path / "prl"
    assert train.main(tiny_flags(run, "--prl-warmup-epochs", "1", method="prl")) == 0
    history = _json(run / rd.HISTORY)
    assert [h["phase"] for h in history] == ["reason", "contrastive"]
    assert history[0]["loss_cl"] == 0.0 and history[1]["loss_cl"] > 0.0
    metrics = _json(run / rd.METRICS)
    assert 0 <= metrics["test"]["masked"]["ndcg@20"] <= 1


def test_evaluate_errors(tmp_path, capsys):
    assert evaluate.main(["--run-dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert evaluate.main(["--run-dir", str(tmp_path), "--steps-sweep", "3..1"]) == 2
    assert "--steps-sweep" in capsys.readouterr().err
    assert evaluate.main(["--run-dir", str(tmp_path), "--choose-steps", "0..x"]) == 2
    assert "--choose-steps '0..x'" in capsys.readouterr().err
    assert evaluate.main(["--run-dir", str(tmp_path), "--steps", "1",
                          "--choose-steps", "0..2"]) == 2
    assert "pass one of them" in capsys.readouterr().err
