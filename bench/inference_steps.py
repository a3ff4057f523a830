"""Full-ranking evaluation time vs. inference reasoning steps K' (paper Table 4), and
evaluation throughput as a fraction of this machine's sustained matmul GFLOP/s.

For K' = 0..5 it times a whole-test-set full-ranking evaluation (encode, reason, score
every item, rank, NDCG/Recall/MRR) of a model with the dataset's shapes, with the
KV-cached ``tf.while_loop`` and with recomputation of the extended sequence, and reports
each relative to K' = 0 in the same run. Weights do not change the cost, so a freshly
initialised model is used unless ``--run-dir`` names a trained one.

    python bench/inference_steps.py --dataset beauty --hidden-size 256 --repeats 3
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import rearec_tf  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from bench._common import append_section  # noqa: E402
from rearec_tf.config import Config  # noqa: E402
from rearec_tf.data import pipeline, prepare  # noqa: E402
from rearec_tf.metrics.ranking import metrics_from_counts, ranking_counts  # noqa: E402
from rearec_tf.models import ReaRecModel  # noqa: E402


def matmul_gflops(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Sustained float32 GFLOP/s of an (m×k)·(k×n) product, median of ``repeats``."""
    a = tf.random.normal([m, k])
    b = tf.random.normal([k, n])
    f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b, transpose_b=False)))
    f(a, b).numpy()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).numpy()
        times.append(time.perf_counter() - t)
    return 2.0 * m * k * n / np.median(times) / 1e9


def flops(widths, d: int, ffn: int, layers: int, items: int, steps: int) -> dict:
    """Multiply-add FLOPs (×2) of a full-ranking evaluation, from the batches' widths
    (one entry per user: the padded length its bucket gives it): step 0 (every layer
    on every token, the last layer's queries/FFN on the last token only), ``steps``
    reasoning steps (one token through every layer, attending over W + steps keys) and
    scoring (d × items per user)."""
    w = np.asarray(widths, np.float64)
    per_token = 8 * d * d + 4 * d * ffn
    step0 = ((layers - 1) * (w * per_token + w * w * 4 * d)
             + w * 4 * d * d + (4 * d * d + 4 * d * ffn) + w * 4 * d).sum()
    reason = sum((layers * (per_token + (w + k + 1) * 4 * d)).sum() for k in range(steps))
    return {"step0": step0, "reason": reason, "score": 2.0 * d * items * len(w)}


def make_eval_fn(model: ReaRecModel, steps: int, cached: bool):
    table = model.item_embeddings

    @tf.function(reduce_retracing=True)
    def run(item_ids, target, history):
        if cached:
            R = model.reason(item_ids, steps=steps)
        else:
            R = model.reasoner.recompute(item_ids, steps)
        u = model.objective.aggregate(R)
        scores = tf.matmul(u, table, transpose_b=True)
        higher, ties = ranking_counts(scores, target, history, mask_history=True)
        return metrics_from_counts(higher, ties, num_items=int(table.shape[0]))["ndcg@10"]

    return run


def time_eval(fn, batches) -> float:
    t = time.perf_counter()
    for b in batches:
        fn(b["item_ids"], b["target"], b["history"]).numpy()
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--method", default="erl")
    p.add_argument("--max-steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--no-buckets", action="store_true")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)

    cfg = Config.preset("paper", dataset=a.dataset, data_dir=a.data_dir, method=a.method,
                        hidden_size=a.hidden_size, max_reason_steps=max(a.max_steps, 1))
    split = prepare(cfg)
    tf.keras.utils.set_random_seed(0)
    model = ReaRecModel(cfg, split.vocab.num_items, split.item_counts)
    buckets = None if a.no_buckets else pipeline.default_buckets(cfg.max_len)
    batches = list(pipeline.eval_dataset(split.test, cfg.max_len, a.eval_batch_size,
                                         buckets=buckets))
    users, items, d = len(split.test.targets), split.vocab.size, cfg.hidden_size

    gflops = matmul_gflops(a.eval_batch_size, d, items)
    rows, base = [], {}
    for cached in (True, False):
        for k in range(a.max_steps + 1):
            fn = make_eval_fn(model, k, cached)
            time_eval(fn, batches[:2])  # trace + warm up every bucket shape
            for w in {b["item_ids"].shape[1] for b in batches}:
                fn(*[next(b for b in batches if b["item_ids"].shape[1] == w)[x]
                     for x in ("item_ids", "target", "history")])
            ts = [time_eval(fn, batches) for _ in range(a.repeats)]
            med = float(np.median(ts))
            base.setdefault(cached, med)
            rows.append((cached, k, med, med / base[cached] - 1.0))
            print(f"cached={cached} K'={k}: {med:.2f} s (+{100 * (med / base[cached] - 1):.1f} %)",
                  flush=True)
    score_flops = 2.0 * users * d * items
    t0 = rows[0][2]
    widths = [b["item_ids"].shape[1] for b in batches for _ in range(b["item_ids"].shape[0])]
    fl = {k: flops(widths, d, cfg.ffn_size, cfg.num_layers, items, k)
          for k in range(a.max_steps + 1)}
    total0 = fl[0]["step0"] + fl[0]["score"]
    lines = [
        f"Dataset {a.dataset}: {users:,} test users × {items:,} items, d={d}, method "
        f"{a.method}, eval batch {a.eval_batch_size}, length buckets {'off' if a.no_buckets else 'on'}, "
        f"median of {a.repeats} runs (whole test set, full ranking, history masked).",
        "",
        "| K' | KV cache (s) | vs K'=0 | FLOPs vs K'=0 | recompute (s) | vs K'=0 |",
        "|---|---|---|---|---|---|",
    ]
    by = {(c, k): (t, r) for c, k, t, r in rows}
    for k in range(a.max_steps + 1):
        tc, rc = by[(True, k)]
        tr, rr = by[(False, k)]
        extra = fl[k]["reason"] / total0
        lines.append(f"| {k} | {tc:.2f} | {100 * rc:+.1f} % | {100 * extra:+.1f} % | {tr:.2f} | "
                     f"{100 * rr:+.1f} % |")
    lines += [
        "",
        f"Sustained matmul ({a.eval_batch_size}×{d})·({d}×{items}) on this machine: "
        f"{gflops:.1f} GFLOP/s. The scoring product of the whole test set is "
        f"{score_flops / 1e9:.1f} GFLOP; at K'=0 the evaluation sustains "
        f"{score_flops / t0 / 1e9:.1f} GFLOP/s of scoring work = "
        f"{100 * score_flops / t0 / 1e9 / gflops:.0f} % of the matmul rate. Counting the "
        f"encoder too ({fl[0]['step0'] / 1e9:.1f} GFLOP at step 0 over the bucketed widths, "
        f"mean width {np.mean(widths):.1f}), the K'=0 evaluation does "
        f"{total0 / 1e9:.1f} GFLOP in {t0:.2f} s = {total0 / t0 / 1e9:.1f} GFLOP/s = "
        f"{100 * total0 / t0 / 1e9 / gflops:.0f} % of the matmul rate; the rest is "
        "attention softmax, LayerNorm/GELU, masking and ranking. *FLOPs vs K'=0* is the "
        "floor a reasoning step's extra work sets on the time ratio.",
    ]
    if not a.no_write:
        append_section("Inference: full-ranking evaluation time vs reasoning steps K'",
                       "\n".join(lines))
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
