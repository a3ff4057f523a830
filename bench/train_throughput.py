"""Training throughput, validation time and peak memory of SASRec, ReaRec-ERL and
ReaRec-PRL on a real dataset, each in its own process (so peak RSS is its own).

    python bench/train_throughput.py --dataset beauty --hidden-size 256 --batch-size 2048 \
        --runs base,erl:2,prl:2 [--repeats 3] [--max-steps 25]
    python bench/train_throughput.py --runs base,base+mb2   # gradient accumulation vs not
    python bench/train_throughput.py --runs base,base+bf16,erl:2,erl:2+bf16  # bfloat16 scoring

For each run: one full training epoch (or, with ``--max-steps N``, its first N batches
scaled to the epoch's batch count) after a warm-up that traces every batch shape
(seconds/epoch, samples/s), a full-ranking validation pass (seconds), and the peak
resident memory above what the process held after loading the data. PRL is measured in
its contrastive phase (the costlier one, noisy branch on). Ratios are against the SASRec
row of the same invocation and against the authors' PyTorch release as measured on this
kind of machine (issue #4: SASRec 209 samples/s, ERL 51, PRL 27; +4.5/+12.5/+20.4 GiB).
A ``+mbN`` run trains with ``micro_batches=N``: the same batch and update, computed as N
gradient-accumulated micro-batches. A ``+bf16`` run trains with ``scoring_dtype=bfloat16``
(the catalogue scoring product in bfloat16).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import emit_result, publish, run_child, status_gib  # noqa: E402

RELEASE = {"base": (209.0, 4.5), "erl": (51.0, 12.5), "prl": (27.0, 20.4)}


def _parse_run(run: str):
    """``"erl:2+mb2+bf16"`` -> ``("erl:2", 2, "bfloat16")``: micro-batches per batch (1
    without ``+mbN``) and the scoring dtype (``float32`` without ``+bf16``)."""
    spec, *flags = run.split("+")
    micro, dtype = 1, "float32"
    for flag in flags:
        if flag.startswith("mb") and flag[2:].isdigit() and int(flag[2:]) >= 1:
            micro = int(flag[2:])
        elif flag == "bf16":
            dtype = "bfloat16"
        else:
            raise SystemExit(f"--runs: unknown suffix +{flag} in {run!r} (use +mbN, e.g. +mb2, "
                             "or +bf16)")
    return spec, micro, dtype


def child(a) -> dict:
    import rearec_tf  # noqa: F401
    import tensorflow as tf

    from bench._common import peak_rss_gib
    from rearec_tf.config import Config
    from rearec_tf.data import pipeline, prepare
    from rearec_tf.metrics.ranking import evaluate_full_ranking
    from rearec_tf.training.evaluation import make_score_fn
    from rearec_tf.training.trainer import build_model

    spec, micro, scoring_dtype = _parse_run(a.run)
    method, _, k = spec.partition(":")
    cfg = Config.preset("paper", dataset=a.dataset, data_dir=a.data_dir, method=method,
                        hidden_size=a.hidden_size, batch_size=a.batch_size,
                        reason_steps=int(k or 2), prl_warmup_epochs=0,
                        bucket_by_length=not a.no_buckets, jit_compile=a.jit,
                        micro_batches=micro, scoring_dtype=scoring_dtype)
    split = prepare(cfg)
    buckets = pipeline.default_buckets(cfg.max_len) if cfg.bucket_by_length else None
    ds = pipeline.train_dataset(split, cfg.max_len, cfg.batch_size, seed=0, buckets=buckets)
    n = pipeline.num_train_samples(split, "prefix")
    base_rss = status_gib()
    model, _ = build_model(cfg, split.vocab.num_items, split.item_counts)  # as training does
    model.set_epoch(5)  # past every warm-up: PRL runs its contrastive branch
    # Warm-up: one batch of every width traces (and compiles) each shape once.
    seen, warm = set(), []
    for b in ds:
        w = int(b["item_ids"].shape[1])
        if w not in seen:
            seen.add(w)
            warm.append(b)
    warm_ds = tf.data.Dataset.from_tensors(warm[0])
    for b in warm[1:]:
        warm_ds = warm_ds.concatenate(tf.data.Dataset.from_tensors(b))
    model.fit(warm_ds, verbose=0)
    batches = -(-n // cfg.batch_size)
    timed = min(a.max_steps or batches, batches)
    if timed < batches:
        # A partial epoch times the first `timed` batches of the shuffled epoch (every
        # width mixed in), materialised first: filling the shuffle buffer would otherwise
        # dominate a short window. The time is scaled to the epoch's batch count.
        ds = ds.take(timed).cache()
        for _ in ds:
            pass
    t = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    epoch_s = (time.perf_counter() - t) * batches / timed

    score = make_score_fn(model)
    vds = pipeline.eval_dataset(split.valid, cfg.max_len, cfg.eval_batch_size, buckets=buckets)
    evaluate_full_ranking(score, vds.take(2), modes=("masked",),
                          progress=False)
    t = time.perf_counter()
    evaluate_full_ranking(score, vds, modes=("unmasked", "masked"),
                          progress=False)
    valid_s = time.perf_counter() - t
    return {"run": a.run, "samples": n, "timed_batches": timed, "batches": batches,
            "epoch_s": epoch_s, "samples_per_s": n / epoch_s,
            "valid_s": valid_s, "valid_users": len(split.valid.targets),
            "peak_rss_gib": peak_rss_gib(), "rss_after_data_gib": base_rss,
            "extra_rss_gib": peak_rss_gib() - base_rss}


def table(a, reps: dict) -> str:
    """Markdown for the runs: medians over the repeats; the ratio to SASRec is the median
    of the per-repeat ratios (each pair measured back to back), with its range."""
    from statistics import median

    base = next((v for run, v in reps.items() if run == "base"), None)
    first = next(iter(reps.values()))[0]
    timing = ("one full epoch" if not a.max_steps else
              f"the first {a.max_steps} batches of an epoch (of {first['batches']}), "
              "scaled to a full epoch,")
    lines = [
        f"Dataset {a.dataset}, d={a.hidden_size}, 2 layers, 2 heads, ffn 300, max_len 50, "
        f"prefix samples, full softmax, batch {a.batch_size}, length buckets "
        f"{'off' if a.no_buckets else 'on'}, XLA {'on' if a.jit else 'off'}; {timing} "
        "timed after tracing; PRL in its contrastive phase; validation = full ranking of every "
        f"validation user, both masking modes. Median of {a.repeats} interleaved run(s) "
        "per row; the SASRec ratio is the median of the per-repeat ratios [min–max].",
        "",
        "| run | samples/s | s/epoch | × release samples/s | epoch vs SASRec | validation s "
        "| peak RSS GiB (extra over data) | extra RSS / release |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run, rs in reps.items():
        rel_sps, rel_mem = RELEASE[_parse_run(run)[0].split(":")[0]]
        med = {k: median(r[k] for r in rs) for k in
               ("samples_per_s", "epoch_s", "valid_s", "peak_rss_gib", "extra_rss_gib")}
        vs_base = "–"
        if base:
            ratios = [r["epoch_s"] / b["epoch_s"] for r, b in zip(rs, base)]
            vs_base = f"{median(ratios):.2f}×"
            if len(ratios) > 1 and rs is not base:
                vs_base += f" [{min(ratios):.2f}–{max(ratios):.2f}]"
        lines.append(
            f"| {run} | {med['samples_per_s']:.0f} | {med['epoch_s']:.1f} | "
            f"{med['samples_per_s'] / rel_sps:.1f}× | {vs_base} | {med['valid_s']:.1f} | "
            f"{med['peak_rss_gib']:.2f} (+{med['extra_rss_gib']:.2f}) | "
            f"{med['extra_rss_gib'] / rel_mem:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--runs", default="base,erl:2,prl:2",
                   help="comma list of method[:K][+mbN][+bf16], e.g. base,erl:1,erl:2,erl:3,"
                        "prl:2; +mbN trains with micro_batches=N (gradient accumulation), e.g. "
                        "base,base+mb2; +bf16 with scoring_dtype=bfloat16")
    p.add_argument("--no-buckets", action="store_true")
    p.add_argument("--max-steps", type=int, default=None,
                   help="time only the first N batches of the epoch and scale to a full "
                        "epoch (default: the whole epoch)")
    p.add_argument("--repeats", type=int, default=1,
                   help="run every row this many times, interleaved; the table gives medians")
    p.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.run:  # child process
        emit_result(child(a))
        return
    runs = a.runs.split(",")
    reps: dict = {run: [] for run in runs}
    for rep in range(a.repeats):  # interleaved, so a change in the host's load hits every row
        for run in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--run", run,
                   "--dataset", a.dataset, "--hidden-size", str(a.hidden_size),
                   "--batch-size", str(a.batch_size)]
            cmd += ["--data-dir", a.data_dir] if a.data_dir else []
            cmd += ["--no-buckets"] if a.no_buckets else []
            cmd += ["--jit"] if a.jit else []
            cmd += ["--max-steps", str(a.max_steps)] if a.max_steps else []
            r = run_child(cmd, f"run {run} (repeat {rep + 1})")
            print(r, flush=True)
            reps[run].append(r)
    body = table(a, reps)
    publish(f"Training throughput on {a.dataset} (d={a.hidden_size}, batch {a.batch_size})",
            body, a.no_write)


if __name__ == "__main__":
    main()
