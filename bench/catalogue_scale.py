"""Catalogue scale: synthetic catalogues of 10k, 100k and 1M items.

    python bench/catalogue_scale.py --sizes 10000,100000,1000000

For each catalogue size N, in its own process (so peak memory is its own):

- training throughput (samples/s) of one model with the exact full-softmax loss and with
  the TFRS sampled (in-batch, log-Q corrected) retrieval loss, same batches;
- the SavedModel export (``rearec_tf.export``, TFRS brute-force top-k over the whole
  catalogue): size on disk, and in a *separate* process that never imports rearec_tf
  (as TF Serving loads it) the median latency of ``serving_default`` (top-10 of the whole
  catalogue) at batch 1 and batch 64, and that process's resident memory above a bare
  TensorFlow import.

The data are synthetic (Zipf-distributed item ids, full-length histories), so only speed
and memory are meaningful here, not quality.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import emit_result, publish, run_child, status_gib  # noqa: E402


SERVE_CHILD = r"""
import json, os, sys, time
import numpy as np
import tensorflow as tf
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 2**20
base = rss()
path, n, repeats, max_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
steps = int(sys.argv[5])
args = dict(k=tf.constant(10), exclude_history=tf.constant(True), steps=tf.constant(steps))
m = tf.saved_model.load(path)
fn = m.signatures['serving_default']
loaded = rss()
rng = np.random.default_rng(0)
out = {'load_gib': loaded - base}
for b in (1, 64):
    hist = tf.constant(rng.integers(1, n + 1, size=(b, max_len)).astype(str))
    fn(history=hist, **args)  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); r = fn(history=hist, **args); r['item_ids'].numpy(); ts.append(time.perf_counter() - t)
    out[f'p50_ms_b{b}'] = 1000 * float(np.median(ts))
    out[f'p90_ms_b{b}'] = 1000 * float(np.percentile(ts, 90))
out['serve_extra_gib'] = rss() - base
print('RESULT ' + json.dumps(out), flush=True)
"""


def child(a) -> dict:
    import numpy as np

    import rearec_tf  # noqa: F401
    import tensorflow as tf

    from rearec_tf.config import Config
    from rearec_tf.data.vocabulary import Vocabulary
    from rearec_tf.export import export_model
    from rearec_tf.training.trainer import build_model

    n = a.size
    rng = np.random.default_rng(0)
    zipf = 1.0 / np.arange(1, n + 1) ** 0.8
    zipf /= zipf.sum()
    counts = np.concatenate([[0], rng.multinomial(n * 10, zipf)]).astype(np.int64) + 1

    def batch():
        ids = rng.choice(n, size=(a.batch_size, a.max_len + 1), p=zipf) + 1
        return {"item_ids": tf.constant(ids[:, :-1], tf.int32),
                "target": tf.constant(ids[:, -1], tf.int32)}

    batches = [batch() for _ in range(a.train_steps + 2)]
    base_rss = status_gib()
    out = {"size": n}
    model = None
    for loss in ("full_softmax", "retrieval"):
        cfg = Config.preset("small", dataset="file", method=a.method, hidden_size=a.hidden_size,
                            max_len=a.max_len, batch_size=a.batch_size, loss=loss)
        model, _ = build_model(cfg, n, counts)
        warm = tf.data.Dataset.from_tensor_slices(
            {k: tf.stack([b[k] for b in batches[:2]]) for k in batches[0]})
        timed = tf.data.Dataset.from_tensor_slices(
            {k: tf.stack([b[k] for b in batches[2:]]) for k in batches[0]})
        model.fit(warm, verbose=0)  # trace + first steps
        t = time.perf_counter()
        model.fit(timed, verbose=0)
        dt = time.perf_counter() - t
        out[f"train_sps_{loss}"] = a.train_steps * a.batch_size / dt
    out["train_peak_extra_gib"] = status_gib("VmHWM") - base_rss

    vocab = Vocabulary([str(i) for i in range(1, n + 1)])
    tmp = tempfile.mkdtemp(prefix="rearec-catalogue-")
    try:
        t = time.perf_counter()
        path = export_model(model, cfg, vocab, os.path.join(tmp, "m"), warmup=False)
        out["export_s"] = time.perf_counter() - t
        out["export_mib"] = sum(os.path.getsize(os.path.join(d, f))
                                for d, _, fs in os.walk(path) for f in fs) / 2**20
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        out.update(run_child([sys.executable, "-c", SERVE_CHILD, path, str(n), str(a.repeats),
                              str(a.max_len), str(cfg.train_steps)],
                             f"serving child for N={n}", env=env, cwd=tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--method", default="base")
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.size:
        emit_result(child(a))
        return
    results = []
    for n in [int(s) for s in a.sizes.split(",")]:
        cmd = [sys.executable, os.path.abspath(__file__), "--size", str(n),
               "--hidden-size", str(a.hidden_size), "--max-len", str(a.max_len),
               "--batch-size", str(a.batch_size), "--method", a.method,
               "--train-steps", str(a.train_steps), "--repeats", str(a.repeats)]
        r = run_child(cmd, f"catalogue size {n}")
        print(r, flush=True)
        results.append(r)

    lines = [
        f"Synthetic catalogues (Zipf item ids), method {a.method}, d={a.hidden_size}, "
        f"max_len {a.max_len}, batch {a.batch_size} for training ({a.train_steps} timed "
        f"steps after 2 warm-up steps, Adam); serving = `serving_default` (top-10 over the "
        f"whole catalogue, TFRS brute force) of the exported SavedModel loaded by plain "
        f"TensorFlow in a separate process, median (p90) of {a.repeats} calls.",
        "",
        "| items | train samples/s full softmax | train samples/s sampled (TFRS retrieval) "
        "| sampled / full | train peak extra GiB | export MiB | top-10 ms batch 1 "
        "| top-10 ms batch 64 | serving process extra GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fs, ss = r["train_sps_full_softmax"], r["train_sps_retrieval"]
        lines.append(
            f"| {r['size']:,} | {fs:.0f} | {ss:.0f} | {ss / fs:.2f}× | "
            f"{r['train_peak_extra_gib']:.2f} | {r['export_mib']:.0f} | "
            f"{r['p50_ms_b1']:.1f} ({r['p90_ms_b1']:.1f}) | "
            f"{r['p50_ms_b64']:.1f} ({r['p90_ms_b64']:.1f}) | {r['serve_extra_gib']:.2f} |")
    body = "\n".join(lines)
    publish("Catalogue scale: 10k / 100k / 1M items", body, a.no_write)


if __name__ == "__main__":
    main()
