"""Reproduce the paper's comparison: SASRec vs +ERL vs +PRL on every dataset, tuned on
validation, with the per-step/oracle, group and inference-steps analyses.

::

    python -m pipelines.reproduce --datasets beauty,sports,toys,yelp,lastfm,ml-1m \\
        --methods base,erl,prl --seeds 0 --grid small --budget-epochs 50 --preset paper \\
        --out REPRODUCTION.md --runs-dir runs/repro
    python -m pipelines.reproduce ... --dry-run        # print the training commands only
    python -m pipelines.reproduce ... --report-only    # no training: report what exists

For every dataset x method x grid point x seed one ``python -m rearec_tf.train`` run is
made (same preset, epoch budget, early stopping and seed for every row). A run whose
``metrics.json`` exists is skipped, an interrupted one is resumed (``--resume``), so the
command can be stopped and restarted at any time. Runs that diverged (the train CLI's exit
code 3, a non-finite loss) or failed (any other non-zero exit, e.g. a crash) are recorded
as such in ``<runs>/status.json`` and not retried unless ``--retry-failed``.

Tuning (``--grid``) — the paper's grids, selection on validation NDCG@20 in the masking
mode the runs use for early stopping (``select_masked``; unmasked by default, as the
release), the mean over seeds:

``paper``  base τ ∈ {0.05, 0.1, 0.5, 1, 2, 5}; ERL λ ∈ {0.001, 0.005, 0.01, 0.05, 0.1}
           (τ = 0.5); PRL τ ∈ {0.05, 0.1, 0.5, 1, 2, 5} × α ∈ {1.0, 1.2, 1.5, 2, 5, 10}
``small``  base τ ∈ {0.5, 1}; ERL λ ∈ {0.01, 0.05}; PRL τ ∈ {0.5, 1} × α ∈ {2, 5}
``none``   the Config defaults (base τ = 1, ERL λ = 0.05 τ = 0.5, PRL τ = 0.5 α = 5)

The base SASRec's temperature is tuned too, so a gain is not an artefact of a badly set
baseline. Then, for the chosen run of each row (first seed), the analyses of
:mod:`rearec_tf.analysis` run on the test set (cached in ``RUN/analysis/``) and
``--out`` is written: test N@10/N@20/R@10/R@20 in both masking modes, relative gains over
SASRec, their mean over datasets, per-step/oracle rows, quality vs inference steps,
gains by sequence-length and popularity group, figures (``--figures-dir``, default
``docs/figures`` next to ``--out``), the paper's reference numbers next to ours, and the
exact commands. Rows without a finished run say "not run".
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

DEFAULT_DATASETS = ("beauty", "sports", "toys", "yelp", "lastfm", "ml-1m")
METHODS = ("base", "erl", "prl")
METHOD_NAMES = {"base": "SASRec", "erl": "+ERL", "prl": "+PRL"}
BACKBONE_NAMES = {"sasrec": "SASRec", "sasrec_preln": "SASRec (pre-LN)", "bert4rec": "BERT4Rec",
                  "gru4rec": "GRU4Rec",
                  "feature": "Feature (attributes + ID)"}
BACKBONE_FLAGS = {"feature": ("--item-features", "attributes")}
"""Extra training flags of a backbone (the feature backbone reads the dataset's
``*_item2attributes.json``)."""
REPORT_METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20")
SHORT = {"ndcg@10": "N@10", "ndcg@20": "N@20", "recall@10": "R@10", "recall@20": "R@20"}
MODES = ("masked", "unmasked")
SELECT_METRIC = "ndcg@20"
SWEEP_MAX_STEPS = 5

PAPER_TAUS = (0.05, 0.1, 0.5, 1.0, 2.0, 5.0)
PAPER_LAMBDAS = (0.001, 0.005, 0.01, 0.05, 0.1)
PAPER_ALPHAS = (1.0, 1.2, 1.5, 2.0, 5.0, 10.0)


def _grid(taus_base, lambdas, taus_prl, alphas) -> Dict[str, List[Dict[str, float]]]:
    return {"base": [{"temperature": t} for t in taus_base],
            "erl": [{"erl_lambda": lam} for lam in lambdas],
            "prl": [{"temperature": t, "prl_alpha": a}
                    for t, a in itertools.product(taus_prl, alphas)]}


GRIDS: Dict[str, Dict[str, List[Dict[str, float]]]] = {
    "paper": _grid(PAPER_TAUS, PAPER_LAMBDAS, PAPER_TAUS, PAPER_ALPHAS),
    "small": _grid((0.5, 1.0), (0.01, 0.05), (0.5, 1.0), (2.0, 5.0)),
    "none": {"base": [{}], "erl": [{}], "prl": [{}]},
}
PARAM_SHORT = {"temperature": "tau", "erl_lambda": "lam", "prl_alpha": "alpha"}

# SPEC §8: SASRec backbone, the paper's own data and split (not ours), N@10/N@20/R@10/R@20.
PAPER_REFERENCE: Dict[str, Dict[str, Tuple[float, ...]]] = {
    "Yelp": {"base": (.0347, .0452, .0626, .1047), "erl": (.0383, .0474, .0691, .1056),
             "prl": (.0388, .0493, .0730, .1149)},
    "Video & Games": {"base": (.0284, .0353, .0542, .0816), "erl": (.0301, .0385, .0581, .0915),
                      "prl": (.0299, .0379, .0572, .0890)},
    "Software": {"base": (.0696, .0895, .1468, .2264), "erl": (.0743, .0935, .1456, .2224),
                 "prl": (.0739, .0949, .1488, .2324)},
    "CDs & Vinyl": {"base": (.0148, .0174, .0317, .0419), "erl": (.0182, .0212, .0363, .0482),
                    "prl": (.0155, .0195, .0315, .0470)},
    "Baby & Products": {"base": (.0112, .0157, .0260, .0437),
                        "erl": (.0116, .0164, .0228, .0418),
                        "prl": (.0135, .0178, .0281, .0451)},
}
PAPER_MEAN_GAIN = {"erl": 6.76, "prl": 8.21}
# The authors' release on the S3-Rec Beauty file: history masked, test, τ = 0.5 for ERL/PRL.
RELEASE_BEAUTY: Dict[str, Tuple[float, ...]] = {
    "base": (.0472, .0541, .0783, .1060), "prl": (.0502, .0582, .0838, .1158),
    "erl": (.0505, .0581, .0830, .1134)}
# Which of our rows a reference sits next to: (dataset, mode) -> (label, numbers).
# Published SASRec (BCE) on exactly these S3-Rec files, history masked (S3-Rec paper;
# ../shared/data/README.md), as N@10/N@20/R@10/R@20.
PUBLISHED_SASREC: Dict[str, Tuple[float, ...]] = {
    "sports": (.0192, .0231, .0350, .0507), "toys": (.0374, .0441, .0675, .0941),
    "yelp": (.0136, .0182, .0274, .0457), "lastfm": (.0390, .0463, .0688, .0972)}
REFERENCE_CELLS = {("beauty", "masked"): ("authors' release, Beauty, masked", RELEASE_BEAUTY),
                   ("yelp", "unmasked"): ("paper, its own Yelp split (not ours)",
                                          PAPER_REFERENCE["Yelp"]),
                   **{(ds, "masked"): ("published SASRec, BCE, S3-Rec paper", {"base": ref})
                      for ds, ref in PUBLISHED_SASREC.items()}}


# ---------------------------------------------------------------------- the plan
def param_tag(params: Mapping[str, float]) -> str:
    if not params:
        return "default"
    return "-".join(f"{PARAM_SHORT.get(k, k)}{v:g}" for k, v in params.items())


def param_flags(params: Mapping[str, float]) -> List[str]:
    out: List[str] = []
    for k, v in params.items():
        out += ["--" + k.replace("_", "-"), f"{v:g}"]
    return out


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    method: str
    params: Tuple[Tuple[str, float], ...]
    seed: int
    run_dir: str
    backbone: str = "sasrec"

    @property
    def tag(self) -> str:
        return param_tag(dict(self.params))

    @property
    def key(self) -> Tuple[str, str, str]:
        return self.dataset, self.method, self.tag

    @property
    def name(self) -> str:
        prefix = "" if self.backbone == "sasrec" else f"{self.backbone}/"
        return f"{prefix}{self.dataset}/{self.method}/{self.tag}-s{self.seed}"


@dataclass
class Settings:
    preset: str = "paper"
    budget_epochs: Optional[int] = None
    data_dir: Optional[str] = None
    train_args: Tuple[str, ...] = ()
    dataset_args: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    """Extra training flags of one dataset's runs (after ``train_args``, so they win)."""

    def train_argv(self, spec: RunSpec, resume: bool = False) -> List[str]:
        argv = ["--preset", self.preset, "--dataset", spec.dataset, "--method", spec.method,
                *param_flags(dict(spec.params)), "--seed", str(spec.seed)]
        if spec.backbone != "sasrec":
            argv += ["--backbone", spec.backbone, *BACKBONE_FLAGS.get(spec.backbone, ())]
        if self.budget_epochs is not None:
            argv += ["--epochs", str(self.budget_epochs)]
        if self.data_dir:
            argv += ["--data-dir", self.data_dir]
        argv += [*self.train_args, *self.dataset_args.get(spec.dataset, ()),
                 "--run-dir", spec.run_dir, "--verbose", "2"]
        if resume:
            argv.append("--resume")
        return argv

    def command(self, spec: RunSpec, resume: bool = False) -> str:
        return shell("python", "-m", "rearec_tf.train", *self.train_argv(spec, resume))


def shell(*args: str) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def budget_name(budget_epochs: Optional[int]) -> str:
    return "full" if budget_epochs is None else f"ep{budget_epochs}"


def plan(datasets: Sequence[str], methods: Sequence[str], seeds: Sequence[int], grid: str,
         preset: str, budget_epochs: Optional[int], runs_dir: str,
         backbones: Sequence[str] = ("sasrec",)) -> List[RunSpec]:
    """Every run of the reproduction, in execution order (backbone, dataset, method, grid,
    seed). SASRec runs live in ``<root>/<dataset>/...``, other backbones in
    ``<root>/<backbone>/<dataset>/...``."""
    root = os.path.join(runs_dir, f"{preset}-{budget_name(budget_epochs)}")
    specs = []
    for bb in backbones:
        base = root if bb == "sasrec" else os.path.join(root, bb)
        for ds in datasets:
            for m in methods:
                for params in GRIDS[grid][m]:
                    for s in seeds:
                        tag = param_tag(params)
                        specs.append(RunSpec(ds, m, tuple(params.items()), int(s),
                                             os.path.join(base, ds, m, f"{tag}-s{s}"), bb))
    return specs


# ------------------------------------------------------------------- execution
METRICS_FILE = "metrics.json"


def _read_json(path: str) -> Optional[Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _status_path(runs_root: str) -> str:
    return os.path.join(runs_root, "status.json")


def _write_status(runs_root: str, status: Dict[str, Any]) -> None:
    os.makedirs(runs_root, exist_ok=True)
    tmp = _status_path(runs_root) + f".tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(status, f, indent=2, sort_keys=True)
    os.replace(tmp, _status_path(runs_root))


def run_state(spec: RunSpec, status: Mapping[str, Any]) -> str:
    """``done`` (metrics.json), ``diverged``/``failed`` (recorded), ``partial`` (a run
    dir with content to resume) or ``todo``."""
    if os.path.exists(os.path.join(spec.run_dir, METRICS_FILE)):
        return "done"
    rec = status.get(spec.name)
    if rec and rec.get("state") in ("diverged", "failed"):
        return rec["state"]
    if os.path.isdir(spec.run_dir) and os.listdir(spec.run_dir):
        return "partial"
    return "todo"


def execute(spec: RunSpec, settings: Settings, resume: bool, in_process: bool = False) -> int:
    """Train one run; returns the train CLI's exit code. The subprocess's output goes to
    ``<run_dir>.log``."""
    argv = settings.train_argv(spec, resume=resume)
    os.makedirs(os.path.dirname(spec.run_dir), exist_ok=True)
    if in_process:
        from rearec_tf import train

        return int(train.main(argv))
    log = spec.run_dir + ".log"
    with open(log, "a") as f:
        f.write(f"$ {settings.command(spec, resume)}\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "rearec_tf.train", *argv],
                              stdout=f, stderr=subprocess.STDOUT)
    return proc.returncode


def run_all(specs: Sequence[RunSpec], settings: Settings, runs_root: str,
            retry_failed: bool = False, in_process: bool = False) -> None:
    from rearec_tf.train import EXIT_DIVERGED

    status = _read_json(_status_path(runs_root)) or {}
    for i, spec in enumerate(specs, 1):
        state = run_state(spec, status)
        if state == "done" or (state in ("diverged", "failed") and not retry_failed):
            print(f"[{i}/{len(specs)}] {spec.name}: {state}, skipped", flush=True)
            continue
        resume = state == "partial" or (state in ("diverged", "failed")
                                        and os.path.isdir(spec.run_dir)
                                        and bool(os.listdir(spec.run_dir)))
        print(f"[{i}/{len(specs)}] {spec.name}: {'resuming' if resume else 'training'} "
              f"(log {spec.run_dir}.log)", flush=True)
        code = execute(spec, settings, resume, in_process)
        if code == 0:
            status.pop(spec.name, None)
        else:
            state = "diverged" if code == EXIT_DIVERGED else "failed"
            status[spec.name] = {"state": state, "exit_code": code,
                                 "command": settings.command(spec, resume)}
            print(f"    {state} (exit code {code}); see {spec.run_dir}.log", flush=True)
        _write_status(runs_root, status)


# ------------------------------------------------------------------- selection
def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def collect_rows(specs: Sequence[RunSpec], settings: Settings, grid: str,
                 runs_root: Optional[str] = None) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """Pick the best grid point of every (dataset, method) by mean validation NDCG@20.

    Returns ``{(dataset, method): row}``; ``row["status"]`` is ``"ok"`` or ``"not run"``.
    An ``ok`` row holds ``config`` (tag), ``params``, ``valid`` (mean selection metric),
    ``select_mode``, ``test`` ``{mode: {metric: mean}}``, ``test_std``, ``seeds``,
    ``run_dirs``, ``commands``, ``finished``/``grid_size`` and every ``candidates``' valid
    score.
    """
    status = (_read_json(_status_path(runs_root)) or {}) if runs_root else {}
    groups: Dict[Tuple[str, str], Dict[str, List[Tuple[RunSpec, Any]]]] = {}
    for spec in specs:
        per_tag = groups.setdefault((spec.dataset, spec.method), {})
        per_tag.setdefault(spec.tag, []).append(
            (spec, _read_json(os.path.join(spec.run_dir, METRICS_FILE))))
    rows: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for key, per_tag in groups.items():
        candidates = []
        for tag, runs in per_tag.items():
            done = [(s, m) for s, m in runs if m]
            states = [run_state(s, status) for s, _ in runs]
            if not done:
                candidates.append({"config": tag, "valid": None, "state": states[0]})
                continue
            mode = done[0][1].get("select_mode", "unmasked")
            per_seed = {s.seed: m["valid"][mode][SELECT_METRIC] for s, m in done}
            candidates.append({"config": tag, "valid": _mean(list(per_seed.values())),
                               "valid_per_seed": per_seed, "select_mode": mode,
                               "params": dict(done[0][0].params), "runs": done,
                               "state": "done" if len(done) == len(runs) else "partial"})
        finished = [c for c in candidates if c["valid"] is not None
                    and math.isfinite(c["valid"])]
        # Paired selection: grid points are compared on the seeds they all have, so a point
        # trained on one lucky seed does not beat one averaged over three.
        shared = sorted(set.intersection(*[set(c["valid_per_seed"]) for c in finished])
                        if finished else set())
        for c in finished:
            seeds = shared or sorted(c["valid_per_seed"])
            c["select_valid"] = _mean([c["valid_per_seed"][s] for s in seeds])
            c["select_seeds"] = seeds
        row: Dict[str, Any] = {"grid_size": len(candidates), "finished": len(finished),
                               "candidates": [{k: v for k, v in c.items() if k != "runs"}
                                              for c in candidates]}
        if not finished:
            row["status"] = "not run"
            rows[key] = row
            continue
        best = max(finished, key=lambda c: c["select_valid"])  # first of the grid on ties
        runs = best["runs"]
        test = {mode: {k: _mean([m["test"][mode][k] for _, m in runs])
                       for k in runs[0][1]["test"][mode] if k != "count"}
                for mode in MODES}
        test_std = {mode: {k: _std([m["test"][mode][k] for _, m in runs])
                           for k in REPORT_METRICS} for mode in MODES}
        row.update(status="ok", config=best["config"], params=best["params"],
                   valid=best["valid"], select_mode=best["select_mode"],
                   select_seeds=best["select_seeds"], test=test,
                   test_std=test_std, seeds=[s.seed for s, _ in runs],
                   per_seed={s.seed: m["test"] for s, m in runs},
                   run_dirs=[s.run_dir for s, _ in runs],
                   epochs=[m.get("epoch") for _, m in runs],
                   commands=[settings.command(s) for s, _ in runs])
        rows[key] = row
    return rows


# -------------------------------------------------------------------- analysis
def _save_npz(path: str, per_instance: Mapping[str, Any]) -> None:
    import numpy as np

    flat = {f"{mode}/{key}/{m}": np.asarray(v)
            for mode, d in per_instance.items() for key, mm in d.items() for m, v in mm.items()}
    np.savez_compressed(path, **flat)


def _load_npz(path: str) -> Dict[str, Any]:
    import numpy as np

    out: Dict[str, Any] = {}
    with np.load(path) as z:
        for name in z.files:
            mode, key, m = name.split("/")
            out.setdefault(mode, {}).setdefault(key, {})[m] = z[name]
    return out


def analyse_run(run_dir: str, data=None, sweep_steps: int = SWEEP_MAX_STEPS,
                batch_size: int = 512, refresh: bool = False) -> Dict[str, Any]:
    """Per-step/oracle metrics and the steps sweep of a run's best checkpoint on the test
    set, cached in ``RUN/analysis/`` (recomputed when ``metrics.json`` is newer)."""
    from rearec_tf import analysis

    out_dir = os.path.join(run_dir, "analysis")
    doc_path = os.path.join(out_dir, "analysis.json")
    npz_path = os.path.join(out_dir, "per_instance.npz")
    metrics_path = os.path.join(run_dir, METRICS_FILE)
    fresh = (os.path.exists(doc_path) and os.path.exists(npz_path) and
             os.path.getmtime(doc_path) >= os.path.getmtime(metrics_path))
    if fresh and not refresh:
        doc = _read_json(doc_path)
        doc["per_instance"] = _load_npz(npz_path)
        return doc

    from rearec_tf.data import prepare
    from rearec_tf.run_dir import load_run

    config, vocab, model = load_run(run_dir, "best")
    if data is None:
        data = prepare(config, data_dir=config.data_dir)
    if data.vocab != vocab:
        raise RuntimeError(f"{run_dir}: the prepared data's vocabulary differs from the run's")
    steps = analysis.step_metrics(model, config, data.test, batch_size=batch_size)
    doc = analysis.jsonable(steps)
    if config.method != "base":
        k = min(sweep_steps, config.max_reason_steps)
        doc["sweep"] = analysis.steps_sweep(model, config, data.test, max_steps=k,
                                            batch_size=max(64, batch_size // 2))
    # consistency with the training's own test evaluation (same checkpoint)
    ref = _read_json(metrics_path)["test"]
    doc["check_vs_metrics_json"] = max(
        abs(steps["metrics"][mode]["aggregate"][m] - ref[mode][m])
        for mode in MODES for m in REPORT_METRICS)
    os.makedirs(out_dir, exist_ok=True)
    with open(doc_path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
    _save_npz(npz_path, steps["per_instance"])
    doc["per_instance"] = steps["per_instance"]
    return doc


def analyse(rows: Mapping[Tuple[str, str], Mapping[str, Any]], datasets: Sequence[str],
            methods: Sequence[str], figures_dir: str, mode: str = "masked",
            batch_size: int = 512, refresh: bool = False) -> Dict[str, Any]:
    """Run the analyses on the chosen runs and draw the figures.

    Returns ``{dataset: {"runs": {method: analysis doc}, "groups": {method: comparison},
    "figures": {name: path}}}``.
    """
    from rearec_tf import analysis
    from rearec_tf.data import prepare
    from rearec_tf.config import Config

    out: Dict[str, Any] = {}
    for ds in datasets:
        chosen = {m: rows[(ds, m)] for m in methods
                  if rows.get((ds, m), {}).get("status") == "ok"}
        if not chosen:
            continue
        entry: Dict[str, Any] = {"runs": {}, "groups": {}, "figures": {}}
        first = next(iter(chosen.values()))["run_dirs"][0]
        config = Config.load(os.path.join(first, "config.json"))
        data = prepare(config, data_dir=config.data_dir)
        for m, row in chosen.items():
            print(f"analysis: {ds} {m} ({row['run_dirs'][0]})", flush=True)
            entry["runs"][m] = analyse_run(row["run_dirs"][0], data, batch_size=batch_size,
                                           refresh=refresh)
        base = entry["runs"].get("base")
        if base is not None:
            for m, doc in entry["runs"].items():
                if m == "base":
                    continue
                entry["groups"][m] = analysis.compare_groups(
                    base["per_instance"][mode]["aggregate"],
                    doc["per_instance"][mode]["aggregate"], data.test, data.item_counts)
        os.makedirs(figures_dir, exist_ok=True)
        figs = entry["figures"]
        for m, doc in entry["runs"].items():
            if m != "base":
                figs[f"steps-{m}"] = analysis.plot_step_metrics(
                    doc, os.path.join(figures_dir, f"{ds}-{m}-steps.png"), mode=mode,
                    title=f"{ds}: {METHOD_NAMES[m]} per-step metrics and oracle ({mode})")
        if entry["groups"]:
            labels = {METHOD_NAMES[m]: c for m, c in entry["groups"].items()}
            for g in ("length", "popularity"):
                figs[f"{g}-gain"] = analysis.plot_group_gains(
                    labels, os.path.join(figures_dir, f"{ds}-{g}-gain.png"), grouping=g,
                    title=f"{ds}: relative NDCG@20 gain over SASRec by {g} group ({mode})")
        sweeps = {METHOD_NAMES[m]: d["sweep"] for m, d in entry["runs"].items() if "sweep" in d}
        if sweeps:
            base_val = base["metrics"][mode]["aggregate"]["ndcg@20"] if base else None
            figs["sweep"] = analysis.plot_steps_sweep(
                sweeps, os.path.join(figures_dir, f"{ds}-steps-sweep.png"), mode=mode,
                base_value=base_val, title=f"{ds}: NDCG@20 vs inference steps K' ({mode})")
        out[ds] = entry
    return out


# ---------------------------------------------------------------------- report
def relative_gain(base: Optional[float], value: Optional[float]) -> Optional[float]:
    """``100 * (value / base - 1)``; None if either is missing or base is 0."""
    if base is None or value is None or base == 0:
        return None
    if not (math.isfinite(base) and math.isfinite(value)):
        return None
    return 100.0 * (value / base - 1.0)


def row_gains(rows, dataset: str, method: str, mode: str) -> Optional[Dict[str, Any]]:
    """Per-metric gains of ``method`` over base on ``dataset`` and their mean.

    Paired by seed: when the two rows were run with different seeds (some seeds still
    missing), both sides are averaged over the seeds they share, so a gain never compares
    a mean over seeds 0-2 with seed 0 alone."""
    b, r = rows.get((dataset, "base")), rows.get((dataset, method))
    if not (b and r and b.get("status") == "ok" and r.get("status") == "ok"):
        return None
    bt, rt = b["test"][mode], r["test"][mode]
    b_seeds, r_seeds = b.get("per_seed") or {}, r.get("per_seed") or {}
    common = sorted(set(b_seeds) & set(r_seeds))
    if common:
        bt = {m: _mean([b_seeds[s][mode][m] for s in common]) for m in REPORT_METRICS}
        rt = {m: _mean([r_seeds[s][mode][m] for s in common]) for m in REPORT_METRICS}
    gains = {m: relative_gain(bt[m], rt[m]) for m in REPORT_METRICS}
    if any(g is None for g in gains.values()):
        return None
    return {"gains": gains, "mean": _mean(list(gains.values())), "seeds": common}


def _f(v: Optional[float], nd: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _g(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:+.2f}%"


def _tuple_str(t: Sequence[float]) -> str:
    return "/".join(f"{x:.4f}".lstrip("0") for x in t)


def _link(path: str, report_dir: str) -> str:
    return os.path.relpath(path, report_dir).replace(os.sep, "/")


def _with_includes(lines: List[str], includes: Sequence[Tuple[str, str]],
                   report_dir: str) -> str:
    for path, text in includes:
        lines.extend(include_report(text, path, report_dir))
    return "\n".join(lines)


def render_report(rows: Mapping[Tuple[str, str], Mapping[str, Any]], datasets: Sequence[str],
                  methods: Sequence[str], analyses: Optional[Mapping[str, Any]] = None,
                  meta: Optional[Mapping[str, Any]] = None, report_dir: str = ".",
                  analysis_mode: str = "masked",
                  backbone_rows: Optional[Mapping[str, Mapping[Tuple[str, str], Any]]] = None,
                  note: Optional[str] = None,
                  includes: Sequence[Tuple[str, str]] = ()) -> str:
    """The REPRODUCTION.md text. ``rows`` as :func:`collect_rows` returns them (missing
    keys count as not run; ``None``: SASRec was not part of the plan, only the other
    backbones' section is written); ``analyses`` as :func:`analyse`; ``meta`` describes
    the setup (``command``, ``preset``, ``grid``, ``budget``, ``seeds``, ``runs_root``,
    ``date``, ``planned``/``done`` run counts); ``note`` is a hand-written status
    note, quoted before Setup; ``includes`` are ``(path, text)`` of other generated
    reports appended as sections (:func:`include_report`)."""
    meta = dict(meta or {})
    analyses = analyses or {}
    L: List[str] = []
    add = L.append
    add("# ReaRec reproduction (rearec-tf)")
    add("")
    add("Generated by `pipelines/reproduce.py`" + (f" on {meta['date']}" if "date" in meta
                                                   else "") + ". Every number below comes "
        "from a run directory listed in the tables; rows without a finished run say "
        "**not run** (nothing is filled in by hand).")
    add("")
    if note and note.strip():
        for i, line in enumerate(note.strip().splitlines()):
            if i == 0:
                line = "**Status (written by hand; every number below is generated).** " + line
            add(("> " + line).rstrip())
        add("")
    add("## Setup")
    add("")
    if meta.get("command"):
        add(f"- Command: `{meta['command']}`")
    for label, key in (("Preset", "preset"), ("Epoch budget per run", "budget"),
                       ("Tuning grid", "grid"), ("Seeds", "seeds"), ("Runs", "runs_root")):
        if key in meta:
            add(f"- {label}: {meta[key]}")
    if "planned" in meta:
        add(f"- Runs finished: {meta.get('done', 0)} of {meta['planned']} planned.")
    add("- Protocol: leave-one-out on the S3-Rec/SASRec files (test = last item, validation "
        "= second to last), full ranking over all items, ties ranked by expectation "
        "(no flattering), one training sample per target (the release's prefix samples), "
        "Adam, early stopping on validation NDCG@20, best checkpoint restored for test.")
    add("- Model selection: per dataset x method the grid point with the best mean "
        "validation NDCG@20 (masking mode of the runs' early stopping) is reported, the "
        "mean taken over the seeds every finished grid point has (paired); the "
        "base SASRec's temperature is tuned the same way.")
    add("- *masked* = the user's history items are excluded from the ranking (S3-Rec/ICLRec "
        "protocol); *unmasked* = not excluded (the paper's and the release's protocol).")
    add("- Relative gain = (method / SASRec − 1) in %, per metric; *mean* = mean over the "
        "four metrics (the paper's \"mean relative gain\"). When the two rows have different "
        "seeds, the gain compares their means over the seeds both have.")
    add("")
    if rows is None:  # other backbones only
        render_backbones(add, backbone_rows or {}, datasets, methods)
        add("## Commands")
        add("")
        add("```")
        add(meta.get("command", "python -m pipelines.reproduce"))
        for bb_rows in (backbone_rows or {}).values():
            for row in bb_rows.values():
                for cmd in row.get("commands", []):
                    add(cmd)
        add("```")
        add("")
        return _with_includes(L, includes, report_dir)

    for mode in MODES:
        title = ("history masked (S3-Rec/ICLRec protocol)" if mode == "masked"
                 else "history not masked (paper/release protocol)")
        add(f"## Test results — {title}")
        add("")
        head = ["dataset", "method", "chosen config"] + [SHORT[m] for m in REPORT_METRICS] + \
               [f"gain {SHORT[m]}" for m in REPORT_METRICS] + ["mean gain", "reference"]
        add("| " + " | ".join(head) + " |")
        add("|" + "---|" * len(head))
        for ds in datasets:
            ref = REFERENCE_CELLS.get((ds, mode))
            for m in methods:
                row = rows.get((ds, m), {"status": "not run"})
                refcell = f"{_tuple_str(ref[1][m])} ({ref[0]})" if ref and m in ref[1] else ""
                if row.get("status") != "ok":
                    cells = [ds, METHOD_NAMES[m], "**not run**"] + ["–"] * 9 + [refcell]
                else:
                    vals = [_f(row["test"][mode][k]) for k in REPORT_METRICS]
                    g = row_gains(rows, ds, m, mode) if m != "base" else None
                    gains = ([_g(g["gains"][k]) for k in REPORT_METRICS] + [_g(g["mean"])]
                             if g else ["–"] * 5)
                    cfg = row["config"]
                    if len(row.get("seeds", [])) > 1:
                        cfg += f" ({len(row['seeds'])} seeds)"
                    cells = [ds, METHOD_NAMES[m], cfg] + vals + gains + [refcell]
                add("| " + " | ".join(cells) + " |")
        add("")
        add("Reference numbers are N@10/N@20/R@10/R@20. The release's Beauty numbers use the "
            "same S3-Rec file with the history masked; the paper's Yelp numbers come from its "
            "own 20-core Yelp with a global timestamp split and are **not** comparable "
            "number for number.")
        add("")

    add("## Mean relative gain over datasets")
    add("")
    add("| method | mode | datasets with both runs | mean gain (ours) | per dataset | "
        "paper (SASRec, its 5 datasets) |")
    add("|---|---|---|---|---|---|")
    for m in methods:
        if m == "base":
            continue
        for mode in MODES:
            per = [(ds, row_gains(rows, ds, m, mode)) for ds in datasets]
            per = [(ds, g["mean"]) for ds, g in per if g]
            mean = _g(_mean([g for _, g in per])) if per else "not run"
            detail = ", ".join(f"{ds} {_g(g)}" for ds, g in per) or "–"
            paper = f"+{PAPER_MEAN_GAIN[m]:.2f}%" if m in PAPER_MEAN_GAIN else "–"
            add(f"| {METHOD_NAMES[m]} | {mode} | {len(per)} of {len(datasets)} | {mean} | "
                f"{detail} | {paper} |")
    add("")

    if backbone_rows:
        render_backbones(add, backbone_rows, datasets, methods)

    add("## The paper's reference numbers (its data and split, not ours)")
    add("")
    add("SASRec backbone, N@10/N@20/R@10/R@20, history not masked (SPEC §8), and the mean "
        "relative gain over the four metrics recomputed from them:")
    add("")
    add("| dataset | SASRec | +ERL | +PRL | ERL gain | PRL gain |")
    add("|---|---|---|---|---|---|")
    for name, d in PAPER_REFERENCE.items():
        ge = _mean([100 * (e / b - 1) for e, b in zip(d["erl"], d["base"])])
        gp = _mean([100 * (p / b - 1) for p, b in zip(d["prl"], d["base"])])
        add(f"| {name} | {_tuple_str(d['base'])} | {_tuple_str(d['erl'])} | "
            f"{_tuple_str(d['prl'])} | {_g(ge)} | {_g(gp)} |")
    add("")
    add("Authors' release on the S3-Rec Beauty file, history masked, test: SASRec "
        f"{_tuple_str(RELEASE_BEAUTY['base'])}; PRL τ=0.5 {_tuple_str(RELEASE_BEAUTY['prl'])}; "
        f"ERL τ=0.5 {_tuple_str(RELEASE_BEAUTY['erl'])}.")
    add("")

    # ---- analyses
    add(f"## Per-step metrics and the oracle ceiling (test, {analysis_mode})")
    add("")
    add("Each reasoning state r_k scored on its own; *method* = the method's prediction "
        "(ERL: mean of the states, PRL: the last); *oracle* = per test instance the best "
        "step (an upper bound no deployable model reaches; the paper reports +28 % to +53 % "
        "N@20/R@20 over the method on Yelp). *best alone* = share of test instances whose "
        "NDCG@20 is strictly best at that step.")
    add("")
    any_steps = False
    for ds in datasets:
        for m in methods:
            doc = analyses.get(ds, {}).get("runs", {}).get(m)
            if m == "base":
                continue
            if doc is None:
                add(f"- {ds} {METHOD_NAMES[m]}: **not run**")
                continue
            any_steps = True
            res = doc["metrics"][analysis_mode]
            K = int(doc["steps"])
            share = doc.get("best_step_share", {}).get(analysis_mode)
            run = doc.get("run_dir")
            check = doc.get("check_vs_metrics_json")
            add(f"**{ds} {METHOD_NAMES[m]}** (K={K}" + (f", run `{run}`" if run else "") +
                (f"; *method* row vs the run's metrics.json: max abs. difference {check:.1e}"
                 if check is not None else "") + ")")
            add("")
            add("| state | N@10 | N@20 | R@10 | R@20 | best alone | vs method N@20 |")
            add("|---|---|---|---|---|---|---|")
            agg = res["aggregate"]["ndcg@20"]
            keys = [f"step{k}" for k in range(K + 1)] + ["aggregate", "oracle"]
            for key in keys:
                label = {"aggregate": "method", "oracle": "oracle"}.get(key, "r" + key[4:])
                sh = (f"{100 * share[int(key[4:])]:.1f}%" if share and key.startswith("step")
                      else "")
                add(f"| {label} | " + " | ".join(_f(res[key][x]) for x in REPORT_METRICS) +
                    f" | {sh} | {_g(relative_gain(agg, res[key]['ndcg@20']))} |")
            fig = analyses[ds].get("figures", {}).get(f"steps-{m}")
            if fig:
                add("")
                add(f"![{ds} {m} per-step]({_link(fig, report_dir)})")
            add("")
    if not any_steps:
        add("not run")
        add("")

    add(f"## Quality vs inference steps K' (test, {analysis_mode}, NDCG@20)")
    add("")
    add("Models trained with K=2 evaluated with K' = 0..5 reasoning steps at inference "
        "(the paper: quality peaks near the trained K and degrades beyond — "
        "\"overthinking\").")
    add("")
    sweep_rows = []
    ks_max = 0
    for ds in datasets:
        for m in methods:
            doc = analyses.get(ds, {}).get("runs", {}).get(m)
            if m != "base" and doc and "sweep" in doc:
                sw = doc["sweep"]
                ks_max = max(ks_max, max(sw["steps"]))
                sweep_rows.append((ds, m, sw))
            elif m != "base":
                sweep_rows.append((ds, m, None))
    n_cols = max(ks_max, SWEEP_MAX_STEPS) + 1
    add("| dataset | method | " + " | ".join(f"K'={k}" for k in range(n_cols)) + " |")
    add("|---|---|" + "---|" * n_cols)
    for ds, m, sw in sweep_rows:
        if sw is None:
            add(f"| {ds} | {METHOD_NAMES[m]} | **not run** |" + " |" * (n_cols - 1))
            continue
        cells = []
        for k in range(n_cols):
            v = sw["metrics"].get(str(k), {}).get(analysis_mode, {}).get("ndcg@20")
            s = _f(v)
            if k == sw.get("trained_steps"):
                s = f"**{s}**"
            cells.append(s)
        add(f"| {ds} | {METHOD_NAMES[m]} | " + " | ".join(cells) + " |")
    add("")
    add("Bold: the trained K.")
    for ds in datasets:
        fig = analyses.get(ds, {}).get("figures", {}).get("sweep")
        if fig:
            add("")
            add(f"![{ds} steps sweep]({_link(fig, report_dir)})")
    add("")

    for grouping, title, doc_txt in (
            ("length", "user sequence-length group",
             "Groups by the number of history items before the test target, fixed bins "
             "[1-4], [5-9], [10-19], [20+] (`rearec_tf.analysis.LENGTH_BINS`)."),
            ("popularity", "target-item popularity group",
             "Test instances ordered by the training frequency of their target item "
             "(tail to head) and cut into 5 equal-size groups; *count range* = the "
             "target's number of training interactions in the group.")):
        add(f"## Gains by {title} (test, {analysis_mode})")
        add("")
        add(doc_txt + " Cells: the method's value (relative gain over SASRec).")
        add("")
        any_group = False
        for ds in datasets:
            groups = analyses.get(ds, {}).get("groups", {})
            if not groups:
                add(f"- {ds}: **not run** (needs the base run and at least one method)")
                continue
            any_group = True
            ms = list(groups)
            first = groups[ms[0]][grouping]
            head = ["group"] + (["count range"] if grouping == "popularity" else []) + \
                ["n", "SASRec N@20"] + [f"{METHOD_NAMES[m]} N@20" for m in ms]
            head += ["SASRec R@20"] + [f"{METHOD_NAMES[m]} R@20" for m in ms]
            add(f"**{ds}**")
            add("")
            add("| " + " | ".join(head) + " |")
            add("|" + "---|" * len(head))
            for i, r in enumerate(first):
                cells = [r["group"]]
                if grouping == "popularity":
                    cells.append(f"{r['min_count']}–{r['max_count']}" if r["count"] else "–")
                cells += [str(r["count"]), _f(r["base"]["ndcg@20"])]
                for m in ms:
                    rr = groups[m][grouping][i]
                    cells.append(f"{_f(rr['method']['ndcg@20'])} ({_g(rr['gain']['ndcg@20'])})")
                cells.append(_f(r["base"]["recall@20"]))
                for m in ms:
                    rr = groups[m][grouping][i]
                    cells.append(f"{_f(rr['method']['recall@20'])} "
                                 f"({_g(rr['gain']['recall@20'])})")
                add("| " + " | ".join(cells) + " |")
            fig = analyses[ds].get("figures", {}).get(f"{grouping}-gain")
            if fig:
                add("")
                add(f"![{ds} gain by {grouping}]({_link(fig, report_dir)})")
            add("")
        if not any_group:
            add("")

    add("## Hyper-parameter search (validation NDCG@20, mean over seeds)")
    add("")
    add("| dataset | method | finished | grid point: validation NDCG@20 (chosen in bold) |")
    add("|---|---|---|---|")
    for ds in datasets:
        for m in methods:
            row = rows.get((ds, m))
            if not row or not row.get("candidates"):
                add(f"| {ds} | {METHOD_NAMES[m]} | 0 | **not run** |")
                continue
            cells = []
            for c in row["candidates"]:
                v = c.get("valid")
                s = f"{c['config']}: " + (_f(v) if v is not None else c.get("state", "not run"))
                own = sorted(c.get("valid_per_seed", {}))
                if v is not None and c.get("select_seeds") not in (None, own):
                    s += (f" ({len(own)} seeds; {_f(c['select_valid'])} on seed(s) "
                          f"{', '.join(map(str, c['select_seeds']))})")
                if row.get("status") == "ok" and c["config"] == row["config"]:
                    s = f"**{s}**"
                cells.append(s)
            add(f"| {ds} | {METHOD_NAMES[m]} | {row.get('finished', 0)} of "
                f"{row.get('grid_size', len(cells))} | " + "; ".join(cells) + " |")
    add("")

    add("## Commands")
    add("")
    add("The whole table (resumable; `--dry-run` lists every training command of the grid):")
    add("")
    add("```")
    add(meta.get("command", "python -m pipelines.reproduce"))
    add("```")
    add("")
    add("Each reported row (training of the chosen grid point, then its per-step, oracle "
        "and inference-steps evaluation):")
    add("")
    add("```")
    for ds in datasets:
        for m in methods:
            row = rows.get((ds, m))
            if not row or row.get("status") != "ok":
                add(f"# {ds} {METHOD_NAMES[m]}: not run")
                continue
            add(f"# {ds} {METHOD_NAMES[m]} ({row['config']})")
            for cmd, run in zip(row["commands"], row["run_dirs"]):
                add(cmd)
                ev = ["python", "-m", "rearec_tf.evaluate", "--run-dir", run]
                if m != "base":
                    ev += ["--per-step", "--steps-sweep", f"0..{SWEEP_MAX_STEPS}"]
                add(shell(*ev))
    add("```")
    add("")
    return _with_includes(L, includes, report_dir)


def render_backbones(add, backbone_rows, datasets: Sequence[str], methods: Sequence[str]) -> None:
    """The "other backbones" section: each backbone alone vs +ERL/+PRL on top of it."""
    add("## Other backbones under the same reasoning loop")
    add("")
    add("Preset, epoch budget, protocol and model selection as listed under Setup; the "
        "gain of +ERL/+PRL is relative to the same backbone without reasoning. Test "
        "metrics, N@10/N@20/R@10/R@20.")
    add("")
    head = ["backbone", "dataset", "method", "masked", "mean gain masked", "unmasked",
            "mean gain unmasked", "best epoch"]
    add("| " + " | ".join(head) + " |")
    add("|" + "---|" * len(head))
    for bb, rows in backbone_rows.items():
        name = BACKBONE_NAMES.get(bb, bb)
        for ds in datasets:
            for m in methods:
                row = rows.get((ds, m), {"status": "not run"})
                label = name if m == "base" else f"{name} {METHOD_NAMES[m]}"
                if row.get("status") != "ok":
                    add(f"| {name} | {ds} | {label} | **not run** | – | – | – | – |")
                    continue
                cells = [name, ds, label]
                for mode in MODES:
                    cells.append("/".join(_f(row["test"][mode][k]) for k in REPORT_METRICS))
                    g = row_gains(rows, ds, m, mode) if m != "base" else None
                    cells.append(_g(g["mean"]) if g else "–")
                cells.append(", ".join(str(e) for e in row.get("epochs", [])) or "–")
                add("| " + " | ".join(cells) + " |")
    add("")
    add("Mean over datasets of the mean relative gain (masked / unmasked):")
    add("")
    for bb, rows in backbone_rows.items():
        for m in methods:
            if m == "base":
                continue
            parts = []
            for mode in MODES:
                per = [row_gains(rows, ds, m, mode) for ds in datasets]
                per = [g["mean"] for g in per if g]
                parts.append(f"{_g(_mean(per))} ({len(per)} datasets)" if per else "not run")
            add(f"- {BACKBONE_NAMES.get(bb, bb)} {METHOD_NAMES[m]}: " + " / ".join(parts))
    add("")


_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def include_report(text: str, src_path: str, report_dir: str) -> List[str]:
    """Another generated report as a section of this one: its ``# `` title dropped, its
    headings one level deeper (code blocks untouched) and its relative links rewritten
    to resolve from ``report_dir``."""
    src_dir = os.path.dirname(os.path.abspath(src_path))

    def relink(m: "re.Match[str]") -> str:
        target = m.group(2)
        if re.match(r"^([a-z]+:|/|#)", target):
            return m.group(0)
        path, _, frag = target.partition("#")
        new = _link(os.path.join(src_dir, path), report_dir)
        return m.group(1) + new + ("#" + frag if frag else "") + m.group(3)

    out: List[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            if line.startswith("# "):
                continue
            if line.startswith("#"):
                line = "#" + line
            line = _LINK.sub(relink, line)
        out.append(line)
    while out and not out[0].strip():
        out.pop(0)
    rel = _link(os.path.abspath(src_path), report_dir)
    return [f"## Included: [{rel}]({rel})", "",
            "Generated separately by the command in its own Setup section below and copied "
            "here unchanged except for heading levels and links.", ""] + out + [""]


def write_report(path: str, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------- CLI
def _csv(s: str) -> List[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.reproduce",
                                description="Train, tune and analyse SASRec/ERL/PRL on every "
                                            "dataset and write REPRODUCTION.md.")
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--backbones", default="sasrec",
                   help="comma-separated backbones (sasrec, sasrec_preln, bert4rec, gru4rec, feature); "
                        "non-SASRec ones get their own report section")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--grid", choices=sorted(GRIDS), default="small")
    p.add_argument("--budget-epochs", type=int, default=None,
                   help="max epochs per run (default: the preset's 300, early stopping)")
    p.add_argument("--preset", default="paper", help="Config preset of every run")
    p.add_argument("--out", default="REPRODUCTION.md")
    p.add_argument("--figures-dir", default=None,
                   help="default: docs/figures next to --out")
    p.add_argument("--runs-dir", default="runs/repro")
    p.add_argument("--data-dir", default=None, help="default: $REAREC_DATA_DIR")
    p.add_argument("--train-args", default="",
                   help="extra flags for every training run, e.g. '--steps-per-epoch 20'")
    p.add_argument("--dataset-args", action="append", default=[], metavar="DATASET=FLAGS",
                   help="extra training flags for one dataset's runs, e.g. "
                        "'ml-1m=--steps-per-epoch 400' (repeatable)")
    p.add_argument("--analysis-mode", choices=MODES, default="masked",
                   help="masking mode of the per-step, sweep and group analyses")
    p.add_argument("--analysis-batch-size", type=int, default=512)
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: analyse and report the runs that exist")
    p.add_argument("--no-analysis", action="store_true", help="skip analyses and figures")
    p.add_argument("--refresh-analysis", action="store_true",
                   help="recompute cached analyses")
    p.add_argument("--retry-failed", action="store_true",
                   help="retry runs recorded as diverged/failed")
    p.add_argument("--note", default=None, metavar="FILE",
                   help="a hand-written Markdown status note, inserted (marked as written "
                        "by hand) before Setup")
    p.add_argument("--include", action="append", default=[], metavar="FILE",
                   help="append another generated report as a section (repeatable)")
    p.add_argument("--in-process", action="store_true",
                   help="call rearec_tf.train.main in this process instead of a subprocess")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    datasets, methods = _csv(args.datasets), _csv(args.methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods or not datasets:
        print(f"error: --methods must be a subset of {','.join(METHODS)}; --datasets "
              "non-empty", file=sys.stderr)
        return 2
    try:
        seeds = [int(s) for s in _csv(args.seeds)]
    except ValueError:
        print(f"error: --seeds {args.seeds!r}: comma-separated integers", file=sys.stderr)
        return 2
    from rearec_tf.config import PRESETS

    if args.preset not in PRESETS:
        print(f"error: --preset {args.preset!r}: one of {sorted(PRESETS)}", file=sys.stderr)
        return 2
    try:  # read before any training: a wrong path should not wait for hours of runs
        note = open(args.note).read() if args.note else None
        includes = [(path, open(path).read()) for path in args.include]
    except OSError as e:
        print(f"error: {e.filename}: {e.strerror} (--note/--include take an existing "
              "Markdown file)", file=sys.stderr)
        return 2
    dataset_args = {}
    for item in args.dataset_args:
        ds, sep, flags = item.partition("=")
        if not sep or ds not in datasets:
            print(f"error: --dataset-args {item!r}: expected DATASET=FLAGS with DATASET one "
                  f"of --datasets ({','.join(datasets)})", file=sys.stderr)
            return 2
        dataset_args[ds] = tuple(shlex.split(flags))
    settings = Settings(preset=args.preset, budget_epochs=args.budget_epochs,
                        data_dir=args.data_dir, train_args=tuple(shlex.split(args.train_args)),
                        dataset_args=dataset_args)
    backbones = _csv(args.backbones)
    bad = [b for b in backbones if b not in BACKBONE_NAMES]
    if bad or not backbones:
        print(f"error: --backbones must be a subset of {','.join(BACKBONE_NAMES)}",
              file=sys.stderr)
        return 2
    specs = plan(datasets, methods, seeds, args.grid, args.preset, args.budget_epochs,
                 args.runs_dir, backbones)
    runs_root = os.path.join(args.runs_dir, f"{args.preset}-{budget_name(args.budget_epochs)}")
    command = shell("python", "-m", "pipelines.reproduce", *raw)
    n_grid = {m: len(GRIDS[args.grid][m]) for m in methods}
    header = (f"# plan: {len(backbones)} backbone(s) x {len(datasets)} datasets x methods "
              f"{n_grid} grid points x "
              f"{len(seeds)} seed(s) = {len(specs)} runs, preset {args.preset}, "
              f"{'up to ' + str(args.budget_epochs) if args.budget_epochs else 'up to 300 (preset)'}"
              f" epochs each with early stopping; runs in {runs_root}")

    if args.dry_run:
        print(header)
        status = _read_json(_status_path(runs_root)) or {}
        for spec in specs:
            state = run_state(spec, status)
            prefix = "" if state == "todo" else f"# [{state}] "
            print(prefix + settings.command(spec, resume=(state == "partial")))
        return 0

    print(header, flush=True)
    if not args.report_only:
        run_all(specs, settings, runs_root, retry_failed=args.retry_failed,
                in_process=args.in_process)
    rows = (collect_rows([s for s in specs if s.backbone == "sasrec"], settings, args.grid,
                         runs_root) if "sasrec" in backbones else None)
    backbone_rows = {bb: collect_rows([s for s in specs if s.backbone == bb], settings,
                                      args.grid, runs_root)
                     for bb in backbones if bb != "sasrec"}
    report_dir = os.path.dirname(os.path.abspath(args.out))
    figures_dir = args.figures_dir or os.path.join(report_dir, "docs", "figures")
    analyses: Dict[str, Any] = {}
    if not args.no_analysis and rows is not None:
        analyses = analyse(rows, datasets, methods, figures_dir, mode=args.analysis_mode,
                           batch_size=args.analysis_batch_size, refresh=args.refresh_analysis)
        for ds, entry in analyses.items():
            for m, doc in entry["runs"].items():
                doc.setdefault("run_dir", rows[(ds, m)]["run_dirs"][0])
    done = sum(os.path.exists(os.path.join(s.run_dir, METRICS_FILE)) for s in specs)
    meta = {"command": command, "preset": args.preset, "grid": args.grid,
            "budget": (f"{args.budget_epochs} epochs" if args.budget_epochs
                       else "the preset's 300 epochs"),
            "seeds": ", ".join(map(str, seeds)), "runs_root": f"`{runs_root}`",
            "planned": len(specs), "done": done,
            "date": datetime.date.today().isoformat()}
    if settings.train_args:
        meta["budget"] += f" (extra training flags: `{shell(*settings.train_args)}`)"
    for ds, flags in dataset_args.items():
        meta["budget"] += f"; {ds}: `{shell(*flags)}`"
    text = render_report(rows, datasets, methods, analyses, meta, report_dir,
                         args.analysis_mode, backbone_rows, note=note, includes=includes)
    write_report(args.out, text)
    print(f"written: {args.out} ({done} of {len(specs)} runs finished)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
