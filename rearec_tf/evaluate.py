"""Re-evaluate a trained run (full ranking, both masking modes).

::

    python -m rearec_tf.evaluate --run-dir RUN                      # best checkpoint, test
    python -m rearec_tf.evaluate --run-dir RUN --checkpoint latest --split valid
    python -m rearec_tf.evaluate --run-dir RUN --steps 3            # K' = 3 at inference
    python -m rearec_tf.evaluate --run-dir RUN --per-step           # r0..rK', aggregate, oracle
    python -m rearec_tf.evaluate --run-dir RUN --steps-sweep 0..5   # quality vs K'
    python -m rearec_tf.evaluate --run-dir RUN --choose-steps 0..5  # K' chosen on validation

Prints a compact table and writes JSON (``--output``, default
``RUN/eval-<split>-<checkpoint>[-k<K'>][-choose][-per-step][-sweep].json``)::

    {"run_dir", "checkpoint", "epoch", "split", "steps", "count",
     "metrics":   {mode: {"ndcg@20": ..., ...}},                 # the method's prediction
     "per_step":  {mode: {"step0": {...}, ..., "oracle": {...}, "aggregate": {...}}},
     "steps_sweep": {"0": {mode: {...}}, "1": ...},
     "choose_steps": {"split": "valid", "metric", "mode", "values": {"0": ..., ...},
                      "chosen": K'}}

``metrics`` of the default call equals ``metrics.json["test"]`` of the run. With
``--choose-steps`` the inference steps K' are a validation-tuned hyper-parameter: each K' in
the range is scored on the validation split with the run's own selection metric and masking
mode (``select_metric``, ``select_masked``; ties go to the smaller K'), and ``metrics``,
``per_step`` and ``steps`` are those of the chosen K'.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import rearec_tf  # noqa: F401  (before tensorflow)

EXIT_OK, EXIT_USAGE = 0, 2
TABLE_METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rearec_tf.evaluate",
                                description="Full-ranking evaluation of a trained run.")
    p.add_argument("--run-dir", required=True, metavar="RUN")
    p.add_argument("--checkpoint", default="best", metavar="best|latest|N",
                   help="which checkpoint (N = epoch number)")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--steps", type=int, default=None, metavar="K'",
                   help="reasoning steps at inference (default: the trained K)")
    p.add_argument("--choose-steps", default=None, metavar="A..B",
                   help="choose K' in A..B (or a list 0,1,3) on the validation split with the "
                        "run's selection metric, then evaluate --split at it")
    p.add_argument("--per-step", action="store_true",
                   help="metrics of every step r0..rK', the method's aggregate and the oracle")
    p.add_argument("--steps-sweep", default=None, metavar="A..B",
                   help="evaluate the method's prediction for each K' in A..B (or a list 0,1,3)")
    p.add_argument("--modes", default="unmasked,masked",
                   help="comma-separated subset of unmasked,masked")
    p.add_argument("--batch-size", type=int, default=None, help="default: eval_batch_size")
    p.add_argument("--data-dir", default=None, help="folder of the datasets "
                   "(default: the run's data_dir, else $REAREC_DATA_DIR)")
    p.add_argument("--output", default=None, metavar="FILE", help="JSON output path")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def parse_steps(spec: str, flag: str = "--steps-sweep") -> List[int]:
    """``"0..5"`` -> [0..5]; ``"0,2,4"`` -> [0, 2, 4]; ``"3"`` -> [3]."""
    spec = spec.strip()
    try:
        if ".." in spec:
            a, b = spec.split("..", 1)
            lo, hi = int(a), int(b)
            if hi < lo:
                raise ValueError
            return list(range(lo, hi + 1))
        return [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{flag} {spec!r}: use A..B (e.g. 0..5) or a list (0,1,3)") \
            from None


def _resolve_epoch(run_dir: str, which: str) -> int:
    from rearec_tf import run_dir as rd

    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist; pass the --run-dir "
                                "of a `python -m rearec_tf.train` run")
    state = rd.read_state(run_dir)
    if state is None:
        raise FileNotFoundError(f"{run_dir!r} has no checkpoint yet")
    if which in ("best", "latest"):
        e = state.get(f"{which}_epoch") or state.get("latest_epoch")
        return int(e)
    try:
        e = int(which)
    except ValueError:
        raise ValueError(f"--checkpoint {which!r}: use best, latest or an epoch number") \
            from None
    if not os.path.isdir(rd.checkpoint_dir(run_dir, e)):
        kept = sorted(int(n[6:]) for n in os.listdir(os.path.join(run_dir, rd.CHECKPOINTS))
                      if n.startswith("epoch-") and n[6:].isdigit())
        raise FileNotFoundError(f"{run_dir!r} has no checkpoint of epoch {e}; kept epochs: "
                                f"{kept}")
    return e


def default_output(args) -> str:
    name = f"eval-{args.split}-{args.checkpoint}"
    if args.steps is not None:
        name += f"-k{args.steps}"
    if args.choose_steps:
        name += "-choose"
    if args.per_step:
        name += "-per-step"
    if args.steps_sweep:
        name += "-sweep"
    return os.path.join(args.run_dir, name + ".json")


def format_table(rows: Sequence[tuple], metrics: Sequence[str] = TABLE_METRICS) -> str:
    """``rows`` of ``(label, mode, {metric: value})`` as an aligned text table."""
    head = ["", "mode", *metrics]
    body = [[label, mode, *(f"{m.get(k, float('nan')):.4f}" for k in metrics)]
            for label, mode, m in rows]
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *body]]
    return "\n".join(lines)


def evaluate_run(run_dir: str, checkpoint: str = "best", split: str = "test",
                 steps: Optional[int] = None, per_step: bool = False,
                 steps_sweep: Optional[Sequence[int]] = None,
                 modes: Sequence[str] = ("unmasked", "masked"),
                 batch_size: Optional[int] = None, data_dir: Optional[str] = None,
                 progress: bool = False,
                 choose_steps: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """The Python API behind the command line; returns the JSON document."""
    from rearec_tf import run_dir as rd
    from rearec_tf.data import prepare
    from rearec_tf.data.errors import DataError
    from rearec_tf.data.pipeline import default_buckets, eval_dataset
    from rearec_tf.training.evaluation import evaluate_model, metric_ks

    if steps is not None and choose_steps:
        raise ValueError("--steps and --choose-steps both set K'; pass one of them")
    epoch = _resolve_epoch(run_dir, checkpoint)
    config, vocab, model = rd.load_run(run_dir, str(epoch))
    max_k = config.max_reason_steps
    for k in ([steps] if steps is not None else []) + list(steps_sweep or []) + \
            list(choose_steps or []):
        if not 0 <= k <= max_k:
            raise ValueError(f"steps {k} out of range: the model has reasoning positions for "
                             f"0..{max_k} steps (max_reason_steps)")
    data = prepare(config, data_dir=data_dir or config.data_dir)
    if data.vocab != vocab:
        raise DataError(f"the data read now for dataset {config.dataset!r} has a different "
                        f"item vocabulary than the run {run_dir!r} was trained on")
    evalset = data.test if split == "test" else data.valid
    buckets = default_buckets(config.max_len) if config.bucket_by_length else None
    ds = eval_dataset(evalset, config.max_len, batch_size or config.eval_batch_size,
                      buckets=buckets)
    ks = metric_ks(config.select_metric)
    n = vocab.size
    chosen = None
    if choose_steps:
        valid_ds = ds if split == "valid" else eval_dataset(
            data.valid, config.max_len, batch_size or config.eval_batch_size, buckets=buckets)
        metric, mode = config.select_key, config.select_mode
        values = {k: evaluate_model(model, valid_ds, modes=(mode,), ks=ks, steps=k,
                                    num_items=n, progress=progress)[mode][metric]
                  for k in choose_steps}
        steps = max(values, key=lambda k: (values[k], -k))
        chosen = {"split": "valid", "metric": metric, "mode": mode,
                  "values": {str(k): v for k, v in values.items()}, "chosen": steps}
    used_steps = config.train_steps if steps is None else steps
    out: Dict[str, Any] = {"run_dir": run_dir, "checkpoint": checkpoint, "epoch": epoch,
                           "split": split, "method": config.method, "steps": used_steps,
                           "trained_steps": config.train_steps, "count": len(evalset)}
    if chosen is not None:
        out["choose_steps"] = chosen
    out["metrics"] = evaluate_model(model, ds, modes=modes, ks=ks, steps=steps,
                                    num_items=n, progress=progress)
    if per_step:
        out["per_step"] = evaluate_model(model, ds, modes=modes, ks=ks, steps=used_steps,
                                         per_step=True, num_items=n, progress=progress)
    if steps_sweep:
        out["steps_sweep"] = {
            str(k): evaluate_model(model, ds, modes=modes, ks=ks, steps=k, num_items=n,
                                   progress=progress)
            for k in steps_sweep}
    return out


def print_report(doc: Dict[str, Any], modes: Sequence[str]) -> None:
    print(f"{doc['run_dir']}: {doc['method']}, checkpoint {doc['checkpoint']} "
          f"(epoch {doc['epoch']}), {doc['split']} split, {doc['count']} instances, "
          f"K'={doc['steps']} (trained K={doc['trained_steps']})")
    if "choose_steps" in doc:
        c = doc["choose_steps"]
        scores = ", ".join(f"K'={k}: {v:.4f}" for k, v in c["values"].items())
        print(f"K' chosen on validation ({c['mode']} {c['metric']}): {c['chosen']} ({scores})")
    rows = [("prediction", m, doc["metrics"][m]) for m in modes]
    print(format_table(rows))
    if "per_step" in doc:
        print("\nper step:")
        rows = []
        for m in modes:
            res = doc["per_step"][m]
            keys = [k for k in res if k.startswith("step")] + ["aggregate", "oracle"]
            rows += [(("r" + k[4:]) if k.startswith("step") else k, m, res[k])
                     for k in keys if k in res]
        print(format_table(rows))
    if "steps_sweep" in doc:
        print("\nquality vs inference steps K':")
        rows = [(f"K'={k}", m, res[m]) for k, res in doc["steps_sweep"].items() for m in modes]
        print(format_table(rows))


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed by argparse
        return int(e.code or 0)
    from rearec_tf.data.errors import DataError

    try:
        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        bad = [m for m in modes if m not in ("unmasked", "masked")]
        if bad or not modes:
            raise ValueError(f"--modes {args.modes!r}: use unmasked, masked or both")
        sweep = parse_steps(args.steps_sweep) if args.steps_sweep else None
        choose = parse_steps(args.choose_steps, "--choose-steps") if args.choose_steps else None
        doc = evaluate_run(args.run_dir, args.checkpoint, args.split, args.steps,
                           args.per_step, sweep, modes, args.batch_size, args.data_dir,
                           args.progress, choose)
    except (FileNotFoundError, ValueError, DataError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    from rearec_tf.run_dir import write_json

    output = args.output or default_output(args)
    write_json(output, doc)
    print_report(doc, modes)
    print(f"\nwritten: {output}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
