"""Train a ReaRec / SASRec model into a run directory.

::

    python -m rearec_tf.train --dataset beauty --method erl --preset paper
    python -m rearec_tf.train --config my.json --run-dir runs/x --epochs 50
    python -m rearec_tf.train --run-dir runs/x --resume [--epochs 80]

Config precedence for a new run: defaults < ``--preset`` < ``--config FILE`` (JSON,
any subset of the Config fields) < explicit ``--field`` flags. On ``--resume`` the run
directory's ``config.json`` wins; only ``--epochs`` may change — raised to train longer, or
lowered down to the epochs already trained to end a run on a budget — (and ``--data-dir``
may point elsewhere: it does not change the result).

Exit codes: 0 done; 2 bad usage, bad config, missing dataset or run directory not usable;
3 training diverged (non-finite loss; the last good checkpoint is kept); 130 interrupted
(Ctrl-C; the message gives the exact resume command). Anything else is a crash (Python
exits with 1 on an uncaught exception), so a pipeline can tell a diverged run from a
broken one.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import List, Optional

import rearec_tf  # noqa: F401  (before tensorflow)
from rearec_tf.config import PRESETS, Config

# TensorFlow is imported only once the arguments are parsed (fast --help).

EXIT_OK, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rearec_tf.train",
        description="Train ReaRec (base SASRec, ERL or PRL) with full-ranking validation, "
                    "early stopping and resumable checkpoints.")
    p.add_argument("--config", metavar="FILE", help="JSON file of Config fields")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named hyper-parameter preset")
    p.add_argument("--run-dir", metavar="DIR",
                   help="output folder (default runs/<dataset>-<method>-<timestamp>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its latest checkpoint")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0 silent, 1 progress bars (default), 2 one line per epoch")
    Config.add_arguments(p)
    return p


def _error(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


def config_for_new_run(args: argparse.Namespace) -> Config:
    file_fields = {}
    if args.config:
        try:
            with open(args.config) as f:
                file_fields = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"config file {args.config!r} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {args.config!r} is not valid JSON: {e}") from None
        if not isinstance(file_fields, dict):
            raise ValueError(f"config file {args.config!r} must hold a JSON object")
    if args.preset:
        base = Config.preset(args.preset, **file_fields)
    else:
        base = Config.from_dict(file_fields)
    return Config.from_args(args, base)


def config_for_resume(args: argparse.Namespace, run_dir: str) -> Config:
    from rearec_tf import run_dir as rd

    cfg = Config.load(os.path.join(run_dir, rd.CONFIG))
    given = Config.given_flags(args)
    epochs = given.pop("epochs", None)
    given.pop("data_dir", None)
    ignored = sorted(k for k, v in given.items() if getattr(cfg, k) != v)
    if ignored or args.config or args.preset:
        flags = ["--" + k.replace("_", "-") for k in ignored]
        flags += [f for f, v in (("--config", args.config), ("--preset", args.preset)) if v]
        print(f"note: resuming {run_dir}: its config.json wins; ignoring {' '.join(flags)}",
              file=sys.stderr, flush=True)
    if epochs is not None and epochs != cfg.epochs:
        done = (rd.read_state(run_dir) or {}).get("latest_epoch", 0)
        if epochs < done:
            raise ValueError(f"--epochs {epochs} is lower than the {done} epochs this run has "
                             f"already trained; use --epochs {done} or more (--epochs {done} "
                             "ends the run now: best checkpoint restored, test evaluated)")
        cfg = cfg.replace(epochs=epochs)
    return cfg


def default_run_dir(cfg: Config) -> str:
    name = cfg.dataset
    if name == "file" and cfg.data_file:
        name = os.path.splitext(os.path.basename(cfg.data_file))[0]
    return os.path.join("runs", f"{name}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")


def resume_command(run_dir: str, data_dir: Optional[str] = None) -> str:
    cmd = f"python -m rearec_tf.train --run-dir {shlex.quote(run_dir)} --resume"
    if data_dir:
        cmd += f" --data-dir {shlex.quote(data_dir)}"
    return cmd


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed by argparse
        return int(e.code or 0)
    from rearec_tf import run_dir as rd
    from rearec_tf.data.errors import DataError, DatasetNotFoundError

    run_dir = args.run_dir
    data_dir = getattr(args, "data_dir", None)  # unset unless --data-dir was given
    try:
        if args.resume:
            if not run_dir:
                _error("--resume needs --run-dir naming the run to continue")
                return EXIT_USAGE
            if os.path.exists(os.path.join(run_dir, rd.CONFIG)):
                cfg = config_for_resume(args, run_dir)
            else:
                cfg = config_for_new_run(args)
        else:
            cfg = config_for_new_run(args)
            run_dir = run_dir or default_run_dir(cfg)
            if os.path.isdir(run_dir) and os.listdir(run_dir):
                _error(f"run directory {run_dir!r} is not empty; pass --resume to continue "
                       "the run in it, or choose another --run-dir (nothing was overwritten)")
                return EXIT_USAGE
        from rearec_tf.training.evaluation import metric_ks

        metric_ks(cfg.select_metric)  # reject a bad --select-metric before any work
    except ValueError as e:
        _error(str(e))
        return EXIT_USAGE

    from rearec_tf.training import JitCompileError, NonFiniteLossError, RunDirError, train

    try:
        result = train(cfg, run_dir, resume=args.resume, verbose=args.verbose,
                       data_dir=data_dir)
    except DatasetNotFoundError as e:
        _error(str(e))
        return EXIT_USAGE
    except (DataError, RunDirError, JitCompileError) as e:
        _error(str(e))
        return EXIT_USAGE
    except NonFiniteLossError as e:
        state = rd.read_state(run_dir) or {}
        last = state.get("latest_epoch")
        kept = (f"The checkpoint of epoch {last} ({rd.checkpoint_dir(run_dir, last)}) is "
                "intact." if last else "No epoch finished, so no checkpoint was written.")
        _error(f"{e}\n{kept} Start a new run with a changed configuration.")
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        state = rd.read_state(run_dir) or {}
        last = state.get("latest_epoch")
        if last:
            where = (f"the last checkpoint is epoch {last} "
                     f"({rd.checkpoint_dir(run_dir, last)}); resuming continues with "
                     f"epoch {last + 1}")
        else:
            where = "no epoch had finished, so no checkpoint was written; resuming starts over"
        print(f"\ninterrupted: {where}. Resume with:\n  "
              f"{resume_command(run_dir, data_dir)}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED

    if args.verbose:
        print(f"run directory: {run_dir}\nmetrics: {os.path.join(run_dir, rd.METRICS)}",
              flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
