"""ERL's loss and gradient with the closed-form KL gradient of ``rearec_tf.tasks.erl``
against plain autodiff of the same KL formula, and against SASRec's single-step loss,
timed in one process on the same inputs. Appends a section to BENCHMARKS.md.

::

    python bench/erl_loss.py [--shapes 2048x256 256x64] [--items 12102] [--steps 2]
        [--calls 5] [--repeats 5] [--no-write]

Each shape ``BxD`` is a batch of ``B`` final states of ``K+1`` reasoning steps of width
``D`` scored against ``--items`` items (Beauty's catalogue by default) at τ = 0.5:
the logits product, the pooled CE, the pairwise KL (λ = 0.05) and the gradient with
respect to the states and the item table, as in a training step. Each figure is the
median over ``--repeats`` interleaved rounds of the mean of ``--calls`` calls.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from statistics import median

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import publish  # noqa: E402


def autodiff_pairwise_kl(logits):
    """The same ``KL[b, i, j]`` as :func:`rearec_tf.tasks.erl.pairwise_kl`, differentiated
    by autodiff through the softmax and the einsum (the reference implementation)."""
    import tensorflow as tf

    z = tf.cast(logits, tf.float32)
    lse = tf.reduce_logsumexp(z, axis=-1)
    p = tf.exp(z - lse[..., None])
    self_term = tf.reduce_sum(p * z, axis=-1) - lse
    cross = (tf.einsum("bjn,bin->bji", p, tf.stop_gradient(z))
             - tf.stop_gradient(lse)[:, None, :])
    return self_term[:, None, :] - tf.transpose(cross, [0, 2, 1])


def loss_fns(batch: int, width: int, items: int, steps: int):
    import rearec_tf  # noqa: F401
    import tensorflow as tf

    from rearec_tf.tasks.erl import kl_part, pairwise_kl
    from rearec_tf.tasks.recommendation import sparse_ce

    tf.random.set_seed(0)
    states = tf.Variable(tf.random.normal([batch, steps + 1, width]))
    table = tf.Variable(tf.random.normal([items, width]) * 0.1)
    targets = tf.random.uniform([batch], 1, items, tf.int32)

    def erl(kl_fn):
        @tf.function
        def f():
            with tf.GradientTape() as tape:
                logits = tf.einsum("bsd,nd->bsn", states / 0.5, table)
                loss = (sparse_ce(tf.reduce_mean(logits, axis=1), targets)
                        - 0.05 * kl_part(kl_fn(logits)))
            return tape.gradient(loss, [states, table])
        return f

    @tf.function
    def sasrec():
        with tf.GradientTape() as tape:
            loss = sparse_ce(tf.einsum("bd,nd->bn", states[:, -1], table), targets)
        return tape.gradient(loss, [states, table])

    return {"SASRec CE": sasrec, "ERL, autodiff KL": erl(autodiff_pairwise_kl),
            "ERL, closed-form KL gradient": erl(pairwise_kl)}


def measure(fns, calls: int, repeats: int):
    for f in fns.values():
        f()  # trace
        f()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t = time.perf_counter()
            for _ in range(calls):
                f()
            times[name].append((time.perf_counter() - t) / calls * 1e3)
    return {name: median(v) for name, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=["2048x256", "256x64"],
                   help="batch x width pairs, e.g. 2048x256 (paper) 256x64 (small)")
    p.add_argument("--items", type=int, default=12102)
    p.add_argument("--steps", type=int, default=2, help="reasoning steps K")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    lines = [f"Loss + gradient (states and item table) per batch, {a.items} items, K={a.steps}, "
             f"τ = 0.5, λ = 0.05; median of {a.repeats} interleaved rounds of {a.calls} "
             "calls, ms.", "",
             "| batch × d | SASRec CE | ERL, autodiff KL | ERL, closed-form KL gradient "
             "| closed-form / autodiff | ERL (closed-form) / SASRec |",
             "|---|---|---|---|---|---|"]
    for shape in a.shapes:
        batch, width = (int(x) for x in shape.split("x"))
        t = measure(loss_fns(batch, width, a.items, a.steps), a.calls, a.repeats)
        print(shape, t, flush=True)
        base, auto, closed = (t["SASRec CE"], t["ERL, autodiff KL"],
                              t["ERL, closed-form KL gradient"])
        lines.append(f"| {batch} × {width} | {base:.0f} | {auto:.0f} | {closed:.0f} | "
                     f"{closed / auto:.2f} | {closed / base:.2f}× |")
    publish("ERL loss: closed-form KL gradient vs autodiff", "\n".join(lines), a.no_write)


if __name__ == "__main__":
    main()
