"""One model end to end: train -> evaluate (per step, both masking modes) -> export.

::

    python -m pipelines.train_eval_export --dataset beauty --method prl \\
        --run-dir runs/beauty-prl --export-dir models/rearec [--preset paper] \\
        [any python -m rearec_tf.train flag, e.g. --epochs 50 --temperature 0.5]

Steps (each one the project's own CLI, called in this process):

1. ``python -m rearec_tf.train ... --run-dir RUN`` — skipped when ``RUN/metrics.json``
   exists; continued with ``--resume`` when RUN holds an interrupted run.
2. ``python -m rearec_tf.evaluate --run-dir RUN [--per-step --steps-sweep 0..K]`` — the
   test metrics of the best checkpoint (per reasoning step and the oracle for ERL/PRL),
   written to ``RUN/eval-test-best-per-step.json`` (``RUN/eval-test-best.json`` for base).
3. ``python -m rearec_tf.export --run-dir RUN --export-dir DIR`` — a new TF Serving
   version ``DIR/<n>/``.

Exit code: 0, or the exit code of the first step that failed (that step's message says
why). ``--skip-export`` stops after step 2.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import List, Optional

import rearec_tf  # noqa: F401  (before tensorflow)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.train_eval_export",
                                description="train -> evaluate -> export one model; unknown "
                                            "flags are passed to rearec_tf.train")
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True, choices=("base", "erl", "prl"))
    p.add_argument("--run-dir", required=True)
    p.add_argument("--export-dir", required=True)
    p.add_argument("--preset", default=None, help="Config preset for training")
    p.add_argument("--steps-sweep", default=None, metavar="A..B",
                   help="also evaluate K' = A..B inference steps (default 0..K+3 for "
                        "erl/prl, capped at max_reason_steps)")
    p.add_argument("--skip-export", action="store_true")
    return p


def _say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    args, train_extra = build_parser().parse_known_args(argv)
    from rearec_tf import evaluate, export, run_dir as rd, train
    from rearec_tf.config import Config

    run = args.run_dir
    if os.path.exists(os.path.join(run, rd.METRICS)):
        _say(f"train: {run} is finished ({rd.METRICS} exists), skipped")
    else:
        targv = ["--dataset", args.dataset, "--method", args.method, "--run-dir", run]
        if args.preset:
            targv = ["--preset", args.preset] + targv
        targv += train_extra
        if os.path.isdir(run) and os.listdir(run):
            targv.append("--resume")
        _say("python -m rearec_tf.train " + " ".join(shlex.quote(a) for a in targv))
        code = train.main(targv)
        if code != 0:
            print(f"train failed with exit code {code}", file=sys.stderr)
            return code

    cfg = Config.load(os.path.join(run, rd.CONFIG))
    eargv = ["--run-dir", run]
    name = "eval-test-best"
    if cfg.method != "base":
        sweep = args.steps_sweep or f"0..{min(cfg.train_steps + 3, cfg.max_reason_steps)}"
        eargv += ["--per-step", "--steps-sweep", sweep]
        name += "-per-step"
    eargv += ["--output", os.path.join(run, name + ".json")]
    _say("python -m rearec_tf.evaluate " + " ".join(shlex.quote(a) for a in eargv))
    code = evaluate.main(eargv)
    if code != 0:
        print(f"evaluate failed with exit code {code}", file=sys.stderr)
        return code

    if args.skip_export:
        return 0
    xargv = ["--run-dir", run, "--export-dir", args.export_dir]
    _say("python -m rearec_tf.export " + " ".join(shlex.quote(a) for a in xargv))
    code = export.main(xargv)
    if code != 0:
        print(f"export failed with exit code {code}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
