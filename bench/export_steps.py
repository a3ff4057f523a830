"""Serving-side cost of the reasoning steps: time per call of an exported model's
``recommend`` signature for steps K' = 0..5 at a few batch sizes, for the default export
and the ``--xla`` export of the same run, loaded with plain ``tf.saved_model.load`` (no
project code, as TF Serving loads it). Appends a section to BENCHMARKS.md.

::

    python bench/export_steps.py --run-dir runs/x [--batch-sizes 1 8 64] [--max-steps 5]
        [--calls 200] [--repeats 3] [--baseline-checkout DIR] [--no-write]

The exports are written to a temporary folder. Each (export, batch, K') cell is the
median over ``--repeats`` of the mean time of ``--calls`` back-to-back calls after a
warm-up (XLA compiles on the first call of each batch size). Histories are the run's
vocabulary ids, 20 per user. ``--baseline-checkout`` (another checkout of this repo, e.g.
``git worktree add /tmp/base HEAD~1``) also exports the run with that checkout's code and
adds its default export's time and the ratio of this checkout's to it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import git_commit, publish  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(paths, batch_sizes, max_steps: int, calls: int, repeats: int, seed: int = 0):
    """ms per call for every export in ``paths`` and every (batch, K') cell; the exports
    are timed in turn within each repeat of a cell, so a change of the host's speed
    affects them alike."""
    import json

    import numpy as np
    import tensorflow as tf

    fns = [tf.saved_model.load(p).signatures["recommend"] for p in paths]
    vocab = json.load(open(os.path.join(paths[0], "assets", "vocabulary.json")))["ids"]
    rng = np.random.default_rng(seed)
    out = [{} for _ in paths]
    for b in batch_sizes:
        hist = tf.constant([[vocab[i] for i in rng.integers(0, len(vocab), 20)] for _ in range(b)])
        for k in range(max_steps + 1):
            args = dict(history=hist, k=tf.constant(10), exclude_history=tf.constant(True),
                        steps=tf.constant(k))
            for fn in fns:
                fn(**args)  # trace / compile
            times = [[] for _ in fns]
            for _ in range(repeats):
                for fn, t in zip(fns, times):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        fn(**args)["scores"].numpy()
                    t.append((time.perf_counter() - t0) / calls * 1e3)
            for o, t in zip(out, times):
                o[(b, k)] = float(np.median(t))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--max-steps", type=int, default=5)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-checkout", metavar="DIR",
                   help="another checkout whose default export is measured too")
    p.add_argument("--no-write", action="store_true", help="print only")
    a = p.parse_args(argv)
    if a.baseline_checkout and not os.path.exists(
            os.path.join(a.baseline_checkout, "rearec_tf", "export.py")):
        p.error(f"--baseline-checkout {a.baseline_checkout}: no rearec_tf/export.py there")
    tmp = tempfile.mkdtemp(prefix="rearec-export-steps-")
    exports = [("default", [], REPO), ("xla", ["--xla"], REPO)]
    if a.baseline_checkout:
        exports.append(("baseline", [], os.path.abspath(a.baseline_checkout)))
    for name, flags, repo in exports:
        base = os.path.join(tmp, name)
        subprocess.run([sys.executable, "-m", "rearec_tf.export", "--run-dir", a.run_dir,
                        "--export-dir", base, "--no-warmup"] + flags, check=True, cwd=repo,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=repo))
    timed = measure([os.path.join(tmp, name, "1") for name, _, _ in exports], a.batch_sizes,
                    a.max_steps, a.calls, a.repeats)
    results = {name: t for (name, _, _), t in zip(exports, timed)}
    base_cols = a.baseline_checkout is not None
    rows = ["| batch | K' | default ms/call | vs K'=0 | xla ms/call | vs K'=0 | xla / default |"
            + (" baseline default ms/call | default / baseline |" if base_cols else ""),
            "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if base_cols else "")]
    for b in a.batch_sizes:
        d0, x0 = results["default"][(b, 0)], results["xla"][(b, 0)]
        for k in range(a.max_steps + 1):
            d, x = results["default"][(b, k)], results["xla"][(b, k)]
            rows.append(f"| {b} | {k} | {d:.2f} | {100 * (d / d0 - 1):+.1f} % | {x:.2f} | "
                        f"{100 * (x / x0 - 1):+.1f} % | {x / d:.2f} |"
                        + (f" {results['baseline'][(b, k)]:.2f} | "
                           f"{d / results['baseline'][(b, k)]:.2f} |" if base_cols else ""))
    body = (f"Run `{a.run_dir}`; `recommend` (top-10 over the whole catalogue, history excluded) "
            f"called in process on the loaded SavedModel, 20-item histories; median of "
            f"{a.repeats} × {a.calls} calls per cell, the exports timed in turn."
            + (f" Baseline: the default export written by the checkout `{a.baseline_checkout}` "
               f"(commit {git_commit(a.baseline_checkout)})." if base_cols else "")
            + "\n\n" + "\n".join(rows))
    publish("Serving: cost of reasoning steps per call, default vs `export --xla`", body, a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
