"""Helpers of the serving tests: the in-process reference answers and a server subprocess."""
from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import List, Sequence

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def tensor_proto(dtype, shape, **fields):
    """A TensorProto built field by field (lists extend repeated fields), so tests can
    write tensors that ``make_tensor_proto`` would refuse: short lists, wrong lengths."""
    from tensorflow.core.framework import tensor_pb2

    p = tensor_pb2.TensorProto(dtype=dtype)
    for d in shape:
        p.tensor_shape.dim.add().size = d
    for k, v in fields.items():
        getattr(p, k).extend(v) if isinstance(v, list) else setattr(p, k, v)
    return p


def reference_user(model, config, vocab, histories: Sequence[Sequence[str]], steps=None) -> np.ndarray:
    """User embeddings of the in-process model: unknown ids dropped, the ``max_len`` most
    recent known items, left-padded."""
    L = config.max_len
    rows = []
    for h in histories:
        known = [x for x in h if x != "" and x in vocab]
        idx = list(vocab.lookup(known)) if known else []
        idx = idx[-L:]
        rows.append([0] * (L - len(idx)) + idx)
    ids = np.array(rows, np.int32).reshape(len(rows), L)
    steps = config.train_steps if steps is None else steps
    return model.user_embedding(ids, steps=steps, training=False).numpy()


def reference_topk(model, config, vocab, histories, k=10, exclude=True, steps=None):
    """``(item_ids [B, k] str, scores [B, k])`` over the whole catalogue (pad row excluded)."""
    user = reference_user(model, config, vocab, histories, steps)
    E = np.asarray(model.item_embeddings)[1:]
    scores = user @ E.T  # [B, N]
    items = np.array(vocab.items, dtype=object)
    out_ids, out_scores = [], []
    for b, h in enumerate(histories):
        s = scores[b].astype(np.float64).copy()
        if exclude:
            known = [x for x in h if x != "" and x in vocab]
            if known:
                s[vocab.lookup(known) - 1] = -np.inf
        order = np.argsort(-s, kind="stable")[:k]
        out_ids.append(items[order])
        out_scores.append(scores[b][order])
    return np.array(out_ids, dtype=object), np.array(out_scores, np.float32)


def sample_histories(vocab, rng: np.random.Generator, n: int, max_len: int = 30,
                     unknown: bool = True) -> List[List[str]]:
    items = vocab.items
    out = []
    for _ in range(n):
        h = [items[i] for i in rng.integers(0, len(items), size=int(rng.integers(0, max_len)))]
        if unknown and h and rng.random() < 0.5:
            h.insert(int(rng.integers(0, len(h))), f"unknown-{int(rng.integers(1e6))}")
        out.append(h)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m serving.server`` as a subprocess on 127.0.0.1."""

    def __init__(self, base_path, *extra, poll: float = 0.5, env=None, rest: bool = False):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.rest_port = free_port() if rest else 0
        self.rest_url = f"http://127.0.0.1:{self.rest_port}"
        if rest:
            extra = ("--rest_api_port", str(self.rest_port)) + tuple(extra)
        self.log = open(pathlib.Path(base_path).parent / f"server-{self.port}.log", "w+")
        e = dict(os.environ)
        e.pop("TF_USE_LEGACY_KERAS", None)
        e.update(env or {})
        e["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + e.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.server", "--model_base_path", str(base_path),
             "--port", str(self.port), "--host", "127.0.0.1", "--poll_interval", str(poll),
             *extra], cwd=str(REPO_ROOT), env=e, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:  # never leave a server running behind a failed test
            self.proc.kill()
            self.proc.wait(10)
            raise

    def wait_ready(self, timeout: float = 240.0):
        # An --xla export compiles one XLA cluster per warm-up batch size while it loads:
        # ~20 s on an idle 2-core machine, 65-70 s beside two trainings, over 90 s beside
        # two trainings and a test run.
        sys.path.insert(0, str(REPO_ROOT)) if str(REPO_ROOT) not in sys.path else None
        from serving.client import RecommenderClient

        deadline = time.time() + timeout
        client = RecommenderClient(self.address, timeout=5.0, retries=0)
        try:
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    if any(v["state"] == "AVAILABLE" for v in client.status()):
                        return
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.3)
            raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")
        finally:
            client.close()

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


