"""pipelines.reproduce: the plan/dry-run commands and the REPRODUCTION.md writer."""
import json
import os

import pytest

from pipelines import reproduce as rp


def test_dry_run_prints_the_expected_commands(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert rp.main(["--datasets", "beauty,yelp", "--methods", "base,prl", "--grid", "small",
                    "--budget-epochs", "7", "--preset", "small", "--runs-dir", runs,
                    "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert lines[0].startswith("# plan: 1 backbone(s) x 2 datasets") and "= 12 runs" in lines[0]
    cmds = lines[1:]
    assert len(cmds) == 2 * (2 + 4)
    root = os.path.join(runs, "small-ep7")
    assert cmds[0] == ("python -m rearec_tf.train --preset small --dataset beauty --method "
                       "base --temperature 0.5 --seed 0 --epochs 7 --run-dir "
                       f"{root}/beauty/base/tau0.5-s0 --verbose 2")
    assert cmds[2] == ("python -m rearec_tf.train --preset small --dataset beauty --method "
                       "prl --temperature 0.5 --prl-alpha 2 --seed 0 --epochs 7 --run-dir "
                       f"{root}/beauty/prl/tau0.5-alpha2-s0 --verbose 2")
    assert cmds[-1].endswith(f"--run-dir {root}/yelp/prl/tau1-alpha5-s0 --verbose 2")
    # nothing was created
    assert not os.path.exists(runs)


def test_dataset_args_reach_only_that_datasets_runs(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    argv = ["--datasets", "beauty,ml-1m", "--methods", "base", "--grid", "none",
            "--budget-epochs", "3", "--preset", "small", "--runs-dir", runs,
            "--train-args", "--patience 2 --steps-per-epoch 9",
            "--dataset-args", "ml-1m=--steps-per-epoch 400", "--dry-run"]
    assert rp.main(argv) == 0
    beauty, ml1m = capsys.readouterr().out.strip().split("\n")[1:]
    assert "--patience 2 --steps-per-epoch 9 --run-dir" in beauty
    # after the common flags, so the dataset's value wins (argparse keeps the last)
    assert "--patience 2 --steps-per-epoch 9 --steps-per-epoch 400 --run-dir" in ml1m
    assert rp.main(argv[:-3] + ["--dataset-args", "yelp=--epochs 1", "--dry-run"]) == 2
    assert "DATASET one of --datasets (beauty,ml-1m)" in capsys.readouterr().err


def test_paper_grid_sizes_and_done_markers(tmp_path, capsys):
    specs = rp.plan(["beauty"], ["base", "erl", "prl"], [0, 1], "paper", "paper", None,
                    str(tmp_path))
    assert len(specs) == (6 + 5 + 36) * 2
    done = specs[0]
    os.makedirs(done.run_dir)
    with open(os.path.join(done.run_dir, "metrics.json"), "w") as f:
        f.write("{}")
    partial = specs[1]
    os.makedirs(partial.run_dir)
    open(os.path.join(partial.run_dir, "config.json"), "w").close()
    assert rp.main(["--datasets", "beauty", "--methods", "base", "--grid", "paper",
                    "--seeds", "0,1", "--runs-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[1].startswith("# [done] python -m rearec_tf.train")
    assert out[2].startswith("# [partial] ") and out[2].endswith("--verbose 2 --resume")
    assert out[3].startswith("python -m rearec_tf.train") and "--seed 0" in out[3]


def _metrics(n10, n20, r10, r20, valid=0.05):
    test = {"ndcg@10": n10, "ndcg@20": n20, "recall@10": r10, "recall@20": r20, "mrr": 0.01}
    return {"status": "ok", "config": "tau0.5", "params": {"temperature": 0.5},
            "valid": valid, "select_mode": "unmasked", "seeds": [0],
            "run_dirs": ["runs/x"], "commands": ["python -m rearec_tf.train --run-dir runs/x"],
            "test": {"masked": dict(test), "unmasked": {k: v / 2 for k, v in test.items()}},
            "candidates": [{"config": "tau0.5", "valid": valid}], "finished": 1,
            "grid_size": 2}


def _row_cells(text, start):
    for line in text.split("\n"):
        if line.startswith(start):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no line starting with {start!r}")


def test_report_gains_and_not_run_markers():
    rows = {("beauty", "base"): _metrics(.0400, .0500, .0800, .1000),
            ("beauty", "erl"): _metrics(.0440, .0550, .0760, .1100),
            ("beauty", "prl"): {"status": "not run", "candidates": [
                {"config": "tau0.5-alpha2", "valid": None, "state": "diverged"}],
                "finished": 0, "grid_size": 1},
            ("lastfm", "base"): _metrics(.1000, .1000, .2000, .2000),
            ("lastfm", "erl"): _metrics(.1200, .1100, .1900, .2120)}
    text = rp.render_report(rows, ["beauty", "lastfm", "toys"], ["base", "erl", "prl"],
                            meta={"command": "python -m pipelines.reproduce --x"})
    masked = text.split("## Test results — history masked")[1].split("## ")[0]
    erl = _row_cells(masked, "| beauty | +ERL")
    # N@10 .044/.040 = +10 %, N@20 +10 %, R@10 .076/.080 = -5 %, R@20 +10 %; mean +6.25 %
    assert erl[3:7] == ["0.0440", "0.0550", "0.0760", "0.1100"]
    assert erl[7:12] == ["+10.00%", "+10.00%", "-5.00%", "+10.00%", "+6.25%"]
    base = _row_cells(masked, "| beauty | SASRec")
    assert base[7:12] == ["–"] * 5 and base[12] == ".0472/.0541/.0783/.1060 " \
        "(authors' release, Beauty, masked)"
    prl = _row_cells(masked, "| beauty | +PRL")
    assert prl[2] == "**not run**" and prl[3:12] == ["–"] * 9
    assert prl[12].startswith(".0502/.0582/.0838/.1158")
    toys = _row_cells(masked, "| toys | SASRec")
    assert toys[2] == "**not run**"
    # lastfm ERL: +20 %, +10 %, -5 %, +6 % -> mean +7.75 %; gains are scale-free (unmasked
    # values are half the masked ones here, the gains the same)
    unmasked = text.split("## Test results — history not masked")[1].split("## ")[0]
    assert _row_cells(unmasked, "| lastfm | +ERL")[7:12] == \
        ["+20.00%", "+10.00%", "-5.00%", "+6.00%", "+7.75%"]
    # mean over the datasets with both runs: (6.25 + 7.75) / 2 = 7.0
    summary = text.split("## Mean relative gain over datasets")[1].split("## ")[0]
    row = _row_cells(summary, "| +ERL | masked")
    assert row[2] == "2 of 3" and row[3] == "+7.00%" and row[5] == "+6.76%"
    assert _row_cells(summary, "| +PRL | masked")[3] == "not run"
    # the paper's table with its recomputed mean gains
    assert "| Yelp | .0347/.0452/.0626/.1047 |" in text
    assert "+6.62%" in text  # Yelp ERL gain from SPEC §8
    # analyses absent -> not run; search table; commands of the reported rows only
    assert "- beauty +ERL: **not run**" in text
    assert "tau0.5-alpha2: diverged" in text
    assert "| toys | +PRL | 0 | **not run** |" in text
    cmds = text.split("## Commands")[1]
    assert "python -m pipelines.reproduce --x" in cmds
    assert "python -m rearec_tf.evaluate --run-dir runs/x --per-step --steps-sweep 0..5" in cmds
    assert "# toys SASRec: not run" in cmds


def _write_metrics(run_dir, v, select_mode):
    """A finished run whose validation and test metrics (both modes) are all ``v``
    (recall ``2 v``)."""
    os.makedirs(run_dir)
    m = {"ndcg@10": v, "ndcg@20": v, "recall@10": 2 * v, "recall@20": 2 * v}
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"select_mode": select_mode, "epoch": 2, "valid": {"unmasked": m, "masked": m},
                   "test": {"unmasked": m, "masked": m}}, f)


def test_collect_rows_selects_best_validation(tmp_path):
    specs = rp.plan(["beauty"], ["base"], [0, 1], "small", "paper", 3, str(tmp_path))
    settings = rp.Settings(preset="paper", budget_epochs=3)
    valid = {("tau0.5", 0): .03, ("tau0.5", 1): .05, ("tau1", 0): .045, ("tau1", 1): .045}
    for s in specs:
        _write_metrics(s.run_dir, valid[(s.tag, s.seed)], "unmasked")
    row = rp.collect_rows(specs, settings, "small")[("beauty", "base")]
    # mean validation: tau0.5 0.04 < tau1 0.045
    assert row["status"] == "ok" and row["config"] == "tau1" and row["seeds"] == [0, 1]
    assert row["test"]["masked"]["ndcg@20"] == pytest.approx(0.045)
    assert row["commands"][0].endswith("--epochs 3 --run-dir "
                                       f"{tmp_path}/paper-ep3/beauty/base/tau1-s0 --verbose 2")


def test_other_backbones_get_their_own_runs_flags_and_section(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert rp.main(["--datasets", "toys", "--methods", "base,erl", "--grid", "none",
                    "--backbones", "gru4rec,feature", "--budget-epochs", "3", "--preset",
                    "small", "--runs-dir", runs, "--dry-run"]) == 0
    cmds = capsys.readouterr().out.strip().split("\n")[1:]
    root = os.path.join(runs, "small-ep3")
    assert cmds[0] == ("python -m rearec_tf.train --preset small --dataset toys --method base "
                       "--seed 0 --backbone gru4rec --epochs 3 --run-dir "
                       f"{root}/gru4rec/toys/base/default-s0 --verbose 2")
    assert "--backbone feature --item-features attributes" in cmds[3]
    assert cmds[3].endswith(f"{root}/feature/toys/erl/default-s0 --verbose 2")
    assert rp.main(["--datasets", "toys", "--backbones", "bert4rec,nope", "--dry-run"]) == 2

    rows = {("toys", "base"): _metrics(.0400, .0500, .0800, .1000),
            ("toys", "erl"): _metrics(.0440, .0550, .0760, .1100)}
    text = rp.render_report({}, ["toys", "yelp"], ["base", "erl"],
                            backbone_rows={"gru4rec": rows})
    section = text.split("## Other backbones under the same reasoning loop")[1].split("## ")[0]
    erl = _row_cells(section, "| GRU4Rec | toys | GRU4Rec +ERL")
    assert erl[3] == "0.0440/0.0550/0.0760/0.1100" and erl[4] == "+6.25%"
    assert erl[5] == "0.0220/0.0275/0.0380/0.0550" and erl[6] == "+6.25%"
    assert _row_cells(section, "| GRU4Rec | yelp | GRU4Rec")[3] == "**not run**"
    assert "- GRU4Rec +ERL: +6.25% (1 datasets) / +6.25% (1 datasets)" in section
    # without SASRec in the plan only the backbones' section (and its commands) is written
    only = rp.render_report(None, ["toys"], ["base", "erl"], meta={"command": "cmd"},
                            backbone_rows={"gru4rec": rows})
    assert "## Test results" not in only and "## Other backbones" in only
    assert "python -m rearec_tf.train --run-dir runs/x" in only.split("## Commands")[1]


def test_note_and_included_reports(tmp_path, capsys):
    docs = tmp_path / "docs" / "reproduction"
    docs.mkdir(parents=True)
    other = docs / "other.md"
    other.write_text("# ReaRec reproduction (rearec-tf)\n\nintro\n\n## Setup\n\n"
                     "![fig](../figures/a.png) [top](../../REPRODUCTION.md#x) "
                     "[web](https://example.org/a.md)\n\n```\n# toys SASRec (default)\n```\n")
    note = tmp_path / "note.md"
    note.write_text("Hand-written line one.\nLine two.\n")
    out = tmp_path / "REPRODUCTION.md"
    assert rp.main(["--datasets", "toys", "--methods", "base", "--grid", "none",
                    "--runs-dir", str(tmp_path / "runs"), "--report-only", "--no-analysis",
                    "--out", str(out), "--note", str(note), "--include", str(other)]) == 0
    text = out.read_text()
    intro, setup = text.split("## Setup", 1)
    assert ("> **Status (written by hand; every number below is generated).** "
            "Hand-written line one.\n> Line two.\n") in intro
    included = text.split("## Included: [docs/reproduction/other.md]"
                          "(docs/reproduction/other.md)")[1]
    assert text.count("# ReaRec reproduction") == 1   # the included title is dropped
    assert "\n### Setup\n" in included and "\n## Setup\n" not in included
    assert "![fig](docs/figures/a.png)" in included
    assert "[top](REPRODUCTION.md#x)" in included and "(https://example.org/a.md)" in included
    assert "```\n# toys SASRec (default)\n```" in included   # code blocks untouched
    capsys.readouterr()
    assert rp.main(["--datasets", "toys", "--grid", "none", "--report-only", "--no-analysis",
                    "--runs-dir", str(tmp_path / "runs"), "--out", str(out),
                    "--include", str(tmp_path / "missing.md")]) == 2
    assert "missing.md" in capsys.readouterr().err


def test_run_all_tells_a_diverged_run_from_a_crashed_one(tmp_path, monkeypatch):
    # The train CLI exits 3 on a non-finite loss; a Python crash exits 1. Only the
    # former may be recorded (and reported) as "diverged".
    specs = rp.plan(["beauty", "toys", "yelp"], ["erl"], [0], "none", "small", 3,
                    str(tmp_path))
    codes = {"beauty": 3, "toys": 1, "yelp": 0}
    monkeypatch.setattr(rp, "execute", lambda spec, *a, **k: codes[spec.dataset])
    rp.run_all(specs, rp.Settings(preset="small", budget_epochs=3), str(tmp_path))
    status = json.load(open(rp._status_path(str(tmp_path))))
    by_dataset = {name.split("/")[0]: rec for name, rec in status.items()}
    assert by_dataset["beauty"]["state"] == "diverged"
    assert by_dataset["toys"]["state"] == "failed" and by_dataset["toys"]["exit_code"] == 1
    assert "yelp" not in by_dataset


def test_gains_are_paired_by_seed():
    """Base over seeds 0 and 1, the method over seed 0 only: the gain uses base's seed 0."""
    def seeded(values):
        row = _metrics(*values[0])
        row["per_seed"] = {}
        for seed, v in enumerate(values):
            t = _metrics(*v)["test"]
            row["per_seed"][seed] = t
        row["seeds"] = list(range(len(values)))
        return row

    rows = {("x", "base"): seeded([(.0400, .0500, .0800, .1000), (.0800, .1000, .1600, .2000)]),
            ("x", "erl"): seeded([(.0440, .0550, .0880, .1100)])}
    g = rp.row_gains(rows, "x", "erl", "masked")
    assert g["seeds"] == [0]
    assert [round(v, 6) for v in g["gains"].values()] == [10.0] * 4
    # same seeds on both sides: the rows' own means
    rows[("x", "erl")] = seeded([(.0440, .0550, .0880, .1100), (.0880, .1100, .1760, .2200)])
    rows[("x", "erl")]["test"] = {m: {k: (a + b) / 2 for (k, a), b in zip(
        rows[("x", "erl")]["per_seed"][0][m].items(),
        rows[("x", "erl")]["per_seed"][1][m].values())} for m in ("masked", "unmasked")}
    rows[("x", "base")]["test"] = {m: {k: (a + b) / 2 for (k, a), b in zip(
        rows[("x", "base")]["per_seed"][0][m].items(),
        rows[("x", "base")]["per_seed"][1][m].values())} for m in ("masked", "unmasked")}
    g = rp.row_gains(rows, "x", "erl", "masked")
    assert g["seeds"] == [0, 1] and [round(v, 6) for v in g["gains"].values()] == [10.0] * 4


def test_grid_points_are_compared_on_the_seeds_they_share(tmp_path):
    """tau0.5 has seeds 0 and 1, tau1 only seed 0: selection uses seed 0 for both, so
    tau0.5's lucky seed 1 does not carry it past tau1."""
    specs = rp.plan(["beauty"], ["base"], [0, 1], "small", "paper", 3, str(tmp_path))
    settings = rp.Settings(preset="paper", budget_epochs=3)
    valid = {("tau0.5", 0): .04, ("tau0.5", 1): .08, ("tau1", 0): .05}
    for s in specs:
        if (s.tag, s.seed) in valid:
            _write_metrics(s.run_dir, valid[(s.tag, s.seed)], "masked")
    row = rp.collect_rows(specs, settings, "small")[("beauty", "base")]
    # own means: tau0.5 0.06 > tau1 0.05; on the shared seed 0: 0.04 < 0.05
    assert row["config"] == "tau1" and row["select_seeds"] == [0] and row["seeds"] == [0]
    cands = {c["config"]: c for c in row["candidates"]}
    assert cands["tau0.5"]["valid"] == pytest.approx(0.06)
    assert cands["tau0.5"]["select_valid"] == pytest.approx(0.04)
    text = rp.render_report({("beauty", "base"): row}, ["beauty"], ["base"])
    assert "tau0.5: 0.0600 (2 seeds; 0.0400 on seed(s) 0); **tau1: 0.0500**" in text
