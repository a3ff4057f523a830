"""Peak resident memory of training and of full-ranking evaluation as the number of users
grows: the same dataset cut to 25 %, 50 % and 100 % of its users, each size in its own
process.

    python bench/memory_scaling.py --datasets ml-1m,beauty [--fractions 0.25,0.5,1]
        [--train-steps 30] [--method base]

For each (dataset, fraction) a child process writes the first ``fraction`` of the users
(in file order) to a temporary file of the same format, prepares it exactly as training
does (leave-one-out split, vocabulary), then measures three resident-set figures from
``/proc/self/status``:

- *data*: RSS after the split is built, minus RSS after importing TensorFlow (what the
  dataset itself costs in this process);
- *train peak*: the highest RSS while building the model and running ``--train-steps``
  optimizer steps (Adam slots created, every batch width traced), minus RSS after data;
- *eval peak*: the highest RSS during a full-ranking pass over every validation user in
  both masking modes, minus RSS after data (the peak is reset with
  ``/proc/self/clear_refs`` before the pass).

The issue's rule: memory must not grow with the number of users beyond the dataset
itself, i.e. *train peak* and *eval peak* stay flat across fractions while *data* grows.
ML-1M uses the ``ml1m`` preset (all-position samples, max_len 200); other datasets the
``paper`` preset (d=256, prefix samples, batch 2048).
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import emit_result, publish, run_child, status_gib  # noqa: E402


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cut_users(src: str, fmt: str, fraction: float, dst: str) -> int:
    """Write the first ``fraction`` of ``src``'s users (file order) to ``dst``; returns the
    number of users written. ``pairs`` files hold one interaction per line, ``sequences``
    files one user per line."""
    if fmt == "sequences":
        with open(src) as f:
            lines = [ln for ln in f if ln.strip()]
        keep = lines[:max(1, round(len(lines) * fraction))]
        with open(dst, "w") as f:
            f.writelines(keep)
        return len(keep)
    if fmt != "pairs":
        raise SystemExit(f"memory_scaling: format {fmt!r} not supported (pairs, sequences)")
    with open(src) as f:  # users in order of first appearance
        users = list(dict.fromkeys(ln.split(maxsplit=1)[0] for ln in f if ln.strip()))
    chosen = set(users[:max(1, round(len(users) * fraction))])
    with open(src) as f, open(dst, "w") as out:
        out.writelines(ln for ln in f if ln.strip() and ln.split(maxsplit=1)[0] in chosen)
    return len(chosen)


def child(a) -> dict:
    import rearec_tf  # noqa: F401
    from rearec_tf.config import Config
    from rearec_tf.data import pipeline, prepare
    from rearec_tf.data.registry import dataset_path, spec
    from rearec_tf.metrics.ranking import evaluate_full_ranking
    from rearec_tf.training.evaluation import make_score_fn
    from rearec_tf.training.trainer import build_model

    rss_import = status_gib()
    fmt = spec(a.dataset).format
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(dataset_path(a.dataset, a.data_dir)))
        users = cut_users(dataset_path(a.dataset, a.data_dir), fmt, a.fraction, path)
        preset = "ml1m" if a.dataset == "ml-1m" else "paper"
        cfg = Config.preset(preset, dataset="file", data_file=path, data_format=fmt,
                            method=a.method, prl_warmup_epochs=0)
        split = prepare(cfg)
    interactions = int(sum(len(s) for s in split.train)) + 2 * len(split.valid.targets)
    rss_data = status_gib()
    buckets = pipeline.default_buckets(cfg.max_len) if cfg.bucket_by_length else None
    ds = pipeline.train_dataset(split, cfg.max_len, cfg.batch_size, mode=cfg.sample_mode,
                                seed=0, buckets=buckets)
    model, _ = build_model(cfg, split.vocab.num_items, split.item_counts)
    model.set_epoch(5)  # past every warm-up (PRL: contrastive branch on)
    model.fit(ds.take(a.train_steps), verbose=0)
    train_peak = status_gib("VmHWM")
    reset = _reset_peak()
    rss_before_eval = status_gib()
    vds = pipeline.eval_dataset(split.valid, cfg.max_len, cfg.eval_batch_size, buckets=buckets)
    evaluate_full_ranking(make_score_fn(model), vds, modes=("unmasked", "masked"), progress=False)
    eval_peak = status_gib("VmHWM")
    return {"dataset": a.dataset, "fraction": a.fraction, "users": users,
            "items": int(split.vocab.num_items), "interactions": interactions,
            "preset": preset, "rss_import_gib": rss_import, "rss_data_gib": rss_data,
            "train_peak_gib": train_peak, "eval_peak_gib": eval_peak if reset else float("nan"),
            "rss_before_eval_gib": rss_before_eval}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="ml-1m,beauty")
    p.add_argument("--fractions", default="0.25,0.5,1")
    p.add_argument("--method", default="base", choices=["base", "erl", "prl"])
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--fraction", type=float, help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.dataset:  # child process
        emit_result(child(a))
        return
    rows = []
    for ds in a.datasets.split(","):
        for fr in (float(x) for x in a.fractions.split(",")):
            cmd = [sys.executable, os.path.abspath(__file__), "--dataset", ds, "--fraction",
                   str(fr), "--method", a.method, "--train-steps", str(a.train_steps)]
            cmd += ["--data-dir", a.data_dir] if a.data_dir else []
            r = run_child(cmd, f"{ds} fraction {fr}")
            print(r, flush=True)
            rows.append(r)
    lines = [
        f"Method {a.method}; {a.train_steps} training steps per size; evaluation = full "
        "ranking of every validation user, both masking modes. GiB of resident memory; "
        "*data* = after building the split minus after importing TensorFlow; *train* and "
        "*eval* = peak minus RSS after the data (the eval peak is reset before its pass); "
        "*eval's own* = eval peak minus RSS just before the pass.",
        "",
        "| dataset (preset) | users | interactions | items | data GiB | train peak +GiB "
        "| eval peak +GiB | eval's own +GiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} ({r['preset']}) | {r['users']:,} | {r['interactions']:,} | "
            f"{r['items']:,} | {r['rss_data_gib'] - r['rss_import_gib']:.3f} | "
            f"{r['train_peak_gib'] - r['rss_data_gib']:.3f} | "
            f"{r['eval_peak_gib'] - r['rss_data_gib']:.3f} | "
            f"{r['eval_peak_gib'] - r['rss_before_eval_gib']:.3f} |")
    publish("Memory vs number of users (training and full-ranking evaluation)",
            "\n".join(lines), a.no_write)


if __name__ == "__main__":
    main()
