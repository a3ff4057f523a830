"""Export a trained ReaRec run as a TensorFlow Serving SavedModel.

::

    python -m rearec_tf.export --run-dir runs/x --export-dir models/rearec [--version N]
                               [--checkpoint best|latest|EPOCH]

writes ``models/rearec/<version>/`` (``version`` = 1 + the largest integer version already
there, or ``--version``). The version is built in a hidden temporary sibling
``models/rearec/.tmp-<version>-<pid>`` (not an integer, so TF Serving's version scanner
and :mod:`serving.server` ignore it) and renamed into place when complete: a server
polling the base path never sees a half-written version. An interrupted export leaves
only a ``.tmp-*`` folder behind (deleted by the next export of the same base path once
its writer process is gone).

The export is self-contained: the item vocabulary is in the graph (a
``tf.lookup.StaticHashTable`` external id -> index, and a constant tensor index -> id),
so clients send and receive their own item ids. Only stock TensorFlow ops are used
(no ``py_function``), so the real ``tensorflow/serving`` binary serves it.

Signatures (``B`` = batch, ``T`` = history length, any size; ``d`` = hidden size)
-----------------------------------------------------------------------------------

Every signature takes ``history`` and the optional ``steps``:

``history``  string ``[B, T]``: external item ids, oldest first, most recent LAST,
    padded (on either side) with ``""``. Unknown ids are ignored (dropped; the remaining
    known items stay in order and right-aligned) and counted in ``num_unknown``; of a
    history longer than the model's ``max_len`` the ``max_len`` most recent known items
    are used. An empty or entirely unknown history is answered with the model run on
    an empty sequence (the cold-start ranking).
``steps``  int32 scalar, optional (default: the trained K; 0 for ``method=base``):
    the number of latent reasoning steps, ``0 <= steps <= max_reason_steps``; any other
    value fails with ``INVALID_ARGUMENT`` ("steps must be in [0, max_reason_steps]").

``serving_default`` = ``recommend``:
    inputs ``history``, ``steps``, ``k`` (int32 scalar, default 10, must be >= 1, capped at
    the catalogue size N), ``exclude_history`` (bool scalar, default true: never
    recommend an item of the (whole, not only the last ``max_len``) history);
    outputs ``item_ids`` string ``[B, min(k, N)]`` best first, ``scores`` float32
    ``[B, min(k, N)]`` (dot product of user and item embeddings, the model's logit before
    its temperature), ``num_unknown`` int32 ``[B]``. Top-k over the whole catalogue with
    a TFRS ``BruteForce`` index (exact); the padding row is never returned. If
    excluding the history leaves fewer than ``k`` items, the trailing slots hold
    ``item_ids=""`` and ``scores=-inf``.
``user_embedding``:
    outputs ``embedding`` float32 ``[B, d]`` (the method's representation: base r0,
    ERL mean(r0..rK), PRL rK) and ``num_unknown`` int32 ``[B]``.
``score_items``:
    inputs ``history``, ``steps``, ``candidates`` string ``[B, C]``;
    outputs ``scores`` float32 ``[B, C]`` (unknown or ``""`` candidates score ``-inf``),
    ``num_unknown`` int32 ``[B]`` (history), ``num_unknown_candidates`` int32 ``[B]``
    (non-empty candidates not in the vocabulary).
``recommend_int``, ``user_embedding_int``, ``score_items_int`` (only when every
    vocabulary id is a canonical integer, e.g. ``"123"``): the same with int64 ids,
    ``history``/``candidates`` padded with ``-1`` and ``item_ids`` int64 (``-1`` = no item).

``--xla``: the encoder and reasoning loop (everything between the id lookups and the
top-k) run as one XLA cluster (``jit_compile``) on the batch padded to the next power of
two. A call takes about half the time with reasoning steps (``BENCHMARKS.md``,
``bench/export_steps.py``), and it gives
the same results (within float rounding); the warm-up requests then include ``recommend``
at batch sizes 1, 2, 4, ..., 256 so that every compilation happens at load time. The
graph still holds only stock ops, but the server must be able to JIT-compile: the pip
``tensorflow`` package and :mod:`serving.server` can; the ``tensorflow/serving`` binary
needs ``--xla_cpu_compilation_enabled=true`` (CPU; experimental there). Without that,
export without ``--xla`` (the default).

Files: ``saved_model.pb``, ``variables/``, ``assets/config.json`` and
``assets/vocabulary.json`` (the run's), ``assets.extra/tf_serving_warmup_requests``
(TFRecord of ``PredictionLog`` protos: ``PredictRequest``\\ s for every signature built from
real histories of the run's data when it can be read, else from vocabulary ids), and
``assets.extra/export.json`` (what was exported from which checkpoint).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

import rearec_tf._env  # noqa: F401
import tensorflow as tf

from rearec_tf import run_dir as rd
from rearec_tf.config import Config
from rearec_tf.layers.top_k import BlockBruteForce

logger = logging.getLogger("rearec_tf.export")

DEFAULT_K = 10
SIGNATURES = ("serving_default", "recommend", "user_embedding", "score_items")
INT_SIGNATURES = ("recommend_int", "user_embedding_int", "score_items_int")
WARMUP_FILE = "tf_serving_warmup_requests"
XLA_WARMUP_BATCHES = tuple(2 ** i for i in range(9))  # 1 .. 256 (the batcher's max rows)
TMP_PREFIX = ".tmp-"
_NEG_INF = float("-inf")


def _canonical_ints(ids: Sequence[str]) -> Optional[np.ndarray]:
    """int64 array of the ids if each is a canonical integer string (``str(int(x)) == x``)."""
    out = np.empty(len(ids), np.int64)
    for i, s in enumerate(ids):
        if not re.fullmatch(r"-?[0-9]+", s):
            return None
        v = int(s)
        if str(v) != s or v < 0 or v >= 2 ** 63:
            return None
        out[i] = v
    return out


class _Untracked:
    """Holds an object without the SavedModel tracking it (only its variables are)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj


class ServingModule(tf.Module):
    """The exported object: vocabulary tables, a TFRS top-k index and the model weights.

    Only plain ``tf.Variable``\\ s / lookup tables are tracked (not the Keras objects), so
    the SavedModel holds the signature graphs and nothing Keras-specific.
    """

    def __init__(self, model, config: Config, vocab, k: int = DEFAULT_K, xla: bool = False):
        super().__init__(name="rearec_serving")
        items = list(vocab.items)
        if "" in items:
            raise ValueError("the vocabulary contains the empty string id, which the export "
                             "reserves for padding")
        self._model = _Untracked(model)  # the Keras model itself is not saved
        self.max_len = int(config.max_len)
        self.max_steps = int(config.max_reason_steps)
        self.default_steps = int(config.train_steps)
        self.num_items = len(items)
        n = self.num_items
        self.model_variables = list(model.variables)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(items, tf.string),
                                                tf.range(1, n + 1, dtype=tf.int64)),
            default_value=-1, name="item_id_to_index")
        self.index_to_id = tf.constant([""] + items, tf.string)  # row 0 = padding -> ""
        ints = _canonical_ints(items)
        self.int_ids = None if ints is None else tf.constant(np.concatenate([[-1], ints]))
        # TFRS exact top-k over rows 1..N (the padding row is not in the index); the
        # identifiers are item indices, mapped to external ids by a constant gather.
        # BlockBruteForce = TFRS's BruteForce with a two-stage top-k (same answers).
        self._topk = _Untracked(BlockBruteForce(k=k, name="top_k"))
        self._topk.obj.index(tf.convert_to_tensor(model.item_embeddings)[1:],
                            identifiers=tf.range(1, n + 1, dtype=tf.int64))
        self.topk_variables = [self._topk.obj._candidates, self._topk.obj._identifiers]
        self.xla = bool(xla)
        self._encode = _Untracked(self._xla_encoder(model) if self.xla else
                                  (lambda ids, steps: model.user_embedding(ids, steps=steps,
                                                                           training=False)))

    @staticmethod
    def _xla_encoder(model):
        """The encoder + reasoning loop as one XLA cluster (``jit_compile``) on a batch
        padded to the next power of two, so a server compiles it for at most
        ``log2(max batch) + 1`` shapes (replayed by the warm-up requests) instead of once
        per batch size. The lookups, top-k and id mapping stay outside the cluster."""
        @tf.function(jit_compile=True, reduce_retracing=True)
        def encode(ids, steps):
            return model.user_embedding(ids, steps=steps, training=False)

        def call(ids, steps):
            b = tf.shape(ids)[0]
            powers = tf.constant([2 ** i for i in range(31)], tf.int32)
            padded = tf.gather(powers, tf.searchsorted(powers, [b])[0])  # smallest 2^i >= b
            ids = tf.pad(ids, [[0, padded - b], [0, 0]])  # extra rows: empty histories
            return encode(ids, steps)[:b]
        return call

    # ------------------------------------------------------------ ids -> indices
    def _lookup(self, history: tf.Tensor):
        """Indices (int64, -1 = unknown, 0 = padding) and the unknown counts."""
        idx = self.table.lookup(history)
        empty = tf.equal(history, "")
        idx = tf.where(empty, tf.zeros_like(idx), idx)
        num_unknown = tf.reduce_sum(tf.cast(idx < 0, tf.int32), axis=1)
        return idx, num_unknown

    def _compact(self, idx: tf.Tensor) -> tf.Tensor:
        """Known items of each row, right-aligned in ``[B, max_len]`` int32 (0 = padding),
        keeping the ``max_len`` most recent."""
        L = self.max_len
        known = idx > 0
        rank = tf.cumsum(tf.cast(known, tf.int32), axis=1, reverse=True)  # 1 = most recent
        keep = tf.logical_and(known, rank <= L)
        where = tf.where(keep)  # [M, 2] (row, position)
        cols = tf.cast(L - tf.gather_nd(rank, where), tf.int64)
        vals = tf.cast(tf.gather_nd(idx, where), tf.int32)
        batch = tf.shape(idx, out_type=tf.int64)[0]
        return tf.scatter_nd(tf.stack([where[:, 0], cols], axis=1), vals,
                             tf.stack([batch, tf.constant(L, tf.int64)]))

    def _trim(self, item_ids: tf.Tensor) -> tf.Tensor:
        """Drop the leading columns that are padding in every row, so the encoder runs
        ``T`` = the longest known history of the batch (at least 1) instead of
        ``max_len`` positions. The answers do not change: position ids count real items,
        padding keys are masked, and GRU4Rec carries its state over padding. An ``--xla``
        export keeps ``max_len``: XLA compiles once per shape, and length buckets would
        multiply the compilations (~1.5 s each here) that the warm-up replays at load."""
        if self.xla:
            return item_ids
        longest = tf.reduce_max(tf.concat(
            [tf.reduce_sum(tf.cast(item_ids > 0, tf.int32), axis=1), [1]], 0))
        return item_ids[:, self.max_len - longest:]

    def _check_steps(self, steps):
        steps = tf.convert_to_tensor(steps, tf.int32)
        msg = f"steps must be in [0, max_reason_steps={self.max_steps}]"
        with tf.control_dependencies([
                tf.debugging.assert_greater_equal(steps, 0, message=msg),
                tf.debugging.assert_less_equal(steps, self.max_steps, message=msg)]):
            return tf.identity(steps)

    def _user(self, history: tf.Tensor, steps):
        idx, num_unknown = self._lookup(history)
        item_ids = self._trim(self._compact(idx))
        steps = self._check_steps(steps)
        user = self._encode.obj(item_ids, steps)
        return tf.cast(user, tf.float32), idx, num_unknown

    # ------------------------------------------------------------ computations
    def _recommend(self, history, k, exclude_history, steps):
        user, idx, num_unknown = self._user(history, steps)
        n = self.num_items
        k = tf.convert_to_tensor(k, tf.int32)
        with tf.control_dependencies([tf.debugging.assert_greater_equal(
                k, 1, message="k must be >= 1")]):
            k_eff = tf.minimum(k, n)
        exclude = tf.convert_to_tensor(exclude_history, tf.bool)
        known = idx > 0
        # Exact exclusion: ask the index for k + (known history length) candidates,
        # drop the history items, keep the best k of the rest.
        h = tf.reduce_max(tf.concat([tf.reduce_sum(tf.cast(known, tf.int32), axis=1), [0]], 0))
        fetch = tf.where(exclude, tf.minimum(k_eff + h, n), k_eff)
        scores, cand = self._topk.obj(user, k=fetch)  # [B, fetch], best first
        where = tf.where(known)
        batch = tf.shape(idx, out_type=tf.int64)[0]
        in_history = tf.scatter_nd(
            tf.stack([where[:, 0], tf.gather_nd(idx, where)], axis=1),
            tf.ones([tf.shape(where)[0]], tf.int32),
            tf.stack([batch, tf.constant(n + 1, tf.int64)])) > 0  # [B, N+1]
        excluded = tf.logical_and(exclude, tf.gather(in_history, cand, batch_dims=1))
        keep = tf.logical_not(excluded)
        masked = tf.where(keep, scores, tf.constant(_NEG_INF, scores.dtype))
        values, pos = tf.math.top_k(masked, k=k_eff)  # stable: keeps the index order
        ok = tf.gather(keep, pos, batch_dims=1)
        index = tf.where(ok, tf.gather(cand, pos, batch_dims=1), tf.zeros_like(pos, tf.int64))
        values = tf.where(ok, values, tf.constant(_NEG_INF, values.dtype))
        return index, tf.cast(values, tf.float32), num_unknown

    def _score(self, history, candidates, steps):
        user, _, num_unknown = self._user(history, steps)
        cidx, _ = self._lookup(candidates)
        table = tf.cast(self._model.obj.item_embeddings, tf.float32)
        emb = tf.gather(table, tf.maximum(cidx, 0))  # [B, C, d]
        scores = tf.einsum("bd,bcd->bc", user, emb)
        scores = tf.where(cidx > 0, scores, tf.constant(_NEG_INF, tf.float32))
        num_unknown_candidates = tf.reduce_sum(tf.cast(cidx < 0, tf.int32), axis=1)
        return scores, num_unknown, num_unknown_candidates

    def _int_to_str(self, ids):
        return tf.where(ids == -1, tf.constant("", tf.string), tf.strings.as_string(ids))

    # -------------------------------------------------------------- signatures
    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        S, I32, B = tf.string, tf.int32, tf.bool
        hist = tf.TensorSpec([None, None], S, name="history")
        k_spec = tf.TensorSpec([], I32, name="k")
        ex_spec = tf.TensorSpec([], B, name="exclude_history")
        st_spec = tf.TensorSpec([], I32, name="steps")
        cand = tf.TensorSpec([None, None], S, name="candidates")
        ds = tf.constant(self.default_steps, tf.int32)
        dk = tf.constant(DEFAULT_K, tf.int32)
        de = tf.constant(True)

        @tf.function(input_signature=[hist, k_spec, ex_spec, st_spec])
        def recommend(history, k=dk, exclude_history=de, steps=ds):
            index, scores, nu = self._recommend(history, k, exclude_history, steps)
            return {"item_ids": tf.gather(self.index_to_id, index), "scores": scores,
                    "num_unknown": nu}

        @tf.function(input_signature=[hist, st_spec])
        def user_embedding(history, steps=ds):
            user, _, nu = self._user(history, steps)
            return {"embedding": user, "num_unknown": nu}

        @tf.function(input_signature=[hist, cand, st_spec])
        def score_items(history, candidates, steps=ds):
            scores, nu, nuc = self._score(history, candidates, steps)
            return {"scores": scores, "num_unknown": nu, "num_unknown_candidates": nuc}

        sigs = {"serving_default": recommend,
                "recommend": recommend,
                "user_embedding": user_embedding,
                "score_items": score_items}
        if self.int_ids is not None:
            ihist = tf.TensorSpec([None, None], tf.int64, name="history")
            icand = tf.TensorSpec([None, None], tf.int64, name="candidates")

            @tf.function(input_signature=[ihist, k_spec, ex_spec, st_spec])
            def recommend_int(history, k=dk, exclude_history=de, steps=ds):
                index, scores, nu = self._recommend(self._int_to_str(history), k,
                                                    exclude_history, steps)
                return {"item_ids": tf.gather(self.int_ids, index), "scores": scores,
                        "num_unknown": nu}

            @tf.function(input_signature=[ihist, st_spec])
            def user_embedding_int(history, steps=ds):
                user, _, nu = self._user(self._int_to_str(history), steps)
                return {"embedding": user, "num_unknown": nu}

            @tf.function(input_signature=[ihist, icand, st_spec])
            def score_items_int(history, candidates, steps=ds):
                scores, nu, nuc = self._score(self._int_to_str(history),
                                              self._int_to_str(candidates), steps)
                return {"scores": scores, "num_unknown": nu, "num_unknown_candidates": nuc}

            sigs.update(recommend_int=recommend_int,
                        user_embedding_int=user_embedding_int,
                        score_items_int=score_items_int)
        return sigs


# ------------------------------------------------------------------- warm-up
def warmup_histories(config: Config, vocab, run_dir: Optional[str] = None,
                     n: int = 8, seed: int = 0) -> List[List[str]]:
    """A few histories (external ids) for the warm-up requests: the test histories of
    the run's data when it can be read, else random vocabulary ids."""
    try:
        from rearec_tf.data import prepare

        split = prepare(config)
        hs = [h[-config.max_len:] for h in split.test.histories[:n]]
        out = [split.vocab.ids(h) for h in hs if len(h)]
        if out:
            return out
    except Exception as e:  # noqa: BLE001 - best effort, the data may be elsewhere
        logger.info("warm-up from the vocabulary (run data not readable: %s)", e)
    rng = np.random.default_rng(seed)
    items = vocab.items
    return [[items[i] for i in rng.integers(0, len(items), size=int(rng.integers(1, config.max_len + 1)))]
            for _ in range(n)]


def _pad_left(histories: Sequence[Sequence], pad) -> np.ndarray:
    length = max([len(h) for h in histories] + [0])
    rows = [[pad] * (length - len(h)) + list(h) for h in histories]
    return np.array(rows, dtype=object if isinstance(pad, str) else np.int64).reshape(len(rows), length)


def write_warmup(path: str, histories: List[List[str]], int_ids: bool, model_name: str = "rearec",
                 batch_sizes: Sequence[int] = ()):
    """TFRecord of ``PredictionLog`` protos, one ``PredictRequest`` per signature and
    batch shape (as TF Serving replays them at load time), plus one ``recommend`` request
    per size in ``batch_sizes`` (an XLA export compiles once per padded batch size: the
    warm-up moves every compilation to load time)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    hist = _pad_left(histories + [[]], "")  # + an empty (cold-start) history
    hist = np.where(hist == "", "", hist).astype(object)
    cands = _pad_left([h[:5] for h in histories] + [["?unknown?"]], "")
    requests = []

    def req(sig, **inputs):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = model_name
        r.model_spec.signature_name = sig
        for key, value in inputs.items():
            r.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        requests.append(r)

    for sig in ("serving_default", "recommend"):
        req(sig, history=hist.astype(bytes))
        req(sig, history=hist[:1].astype(bytes), k=np.int32(10), exclude_history=True)
    for b in batch_sizes:
        req("recommend", history=np.resize(hist, (b, hist.shape[1])).astype(bytes))
    req("user_embedding", history=hist.astype(bytes))
    req("score_items", history=hist.astype(bytes), candidates=cands.astype(bytes))
    if int_ids:
        ih = np.array([[int(x) if x else -1 for x in row] for row in hist], np.int64).reshape(hist.shape)
        req("recommend_int", history=ih)
        req("user_embedding_int", history=ih)
    with tf.io.TFRecordWriter(path) as w:
        for r in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=r))
            w.write(log.SerializeToString())
    return len(requests)


# -------------------------------------------------------------------- export
def _versions(base: str) -> List[int]:
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base)
                  if d.isdigit() and os.path.isdir(os.path.join(base, d)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_tmp(base: str) -> None:
    """Remove ``.tmp-<version>-<pid>`` folders whose writer process is gone."""
    for d in os.listdir(base):
        m = re.fullmatch(re.escape(TMP_PREFIX) + r"(\d+)-(\d+)", d)
        if m and not _pid_alive(int(m.group(2))):
            shutil.rmtree(os.path.join(base, d), ignore_errors=True)


def export_model(model, config: Config, vocab, export_dir: str, version: Optional[int] = None,
                 run_dir: Optional[str] = None, checkpoint: Optional[str] = None,
                 warmup: bool = True, model_name: str = "rearec", xla: bool = False) -> str:
    """Export ``model`` to ``export_dir/<version>`` atomically; returns the version path.
    ``xla``: compile the encoder and reasoning loop with XLA (see :class:`ServingModule`)."""
    os.makedirs(export_dir, exist_ok=True)
    _clean_stale_tmp(export_dir)
    if version is None:
        version = (_versions(export_dir) or [0])[-1] + 1
    if version < 1:
        raise ValueError(f"--version must be >= 1, got {version}")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final!r} already exists: choose another --version (versions "
                              f"present: {_versions(export_dir)})")
    tmp = os.path.join(export_dir, f"{TMP_PREFIX}{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.time()
    staging = tempfile.mkdtemp(prefix="rearec-export-")
    try:
        module = ServingModule(model, config, vocab, xla=xla)
        # Assets are copied into assets/ under their source basename.
        cfg_src = os.path.join(staging, rd.CONFIG)
        voc_src = os.path.join(staging, rd.VOCABULARY)
        config.save(cfg_src)
        vocab.save(voc_src)
        module.config_asset = tf.saved_model.Asset(cfg_src)
        module.vocabulary_asset = tf.saved_model.Asset(voc_src)
        sigs = module.signatures()
        tf.saved_model.save(module, tmp, signatures=sigs)
        extra = os.path.join(tmp, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        n_warm = 0
        if warmup:
            hs = warmup_histories(config, vocab, run_dir)
            n_warm = write_warmup(os.path.join(extra, WARMUP_FILE), hs,
                                  module.int_ids is not None, model_name,
                                  XLA_WARMUP_BATCHES if xla else ())
        info = {"version": version, "run_dir": os.path.abspath(run_dir) if run_dir else None,
                "checkpoint": checkpoint, "method": config.method,
                "default_steps": module.default_steps, "max_reason_steps": module.max_steps,
                "max_len": module.max_len, "num_items": module.num_items,
                "hidden_size": config.hidden_size, "signatures": sorted(sigs), "xla": bool(xla),
                "warmup_requests": n_warm, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "tensorflow": tf.__version__}
        rd.write_json(os.path.join(extra, "export.json"), info)
        _fsync_tree(tmp)
        os.rename(tmp, final)  # atomic on one filesystem; the version appears complete
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported version %d to %s in %.1fs", version, final, time.time() - t0)
    return final


def _fsync_tree(root: str) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rearec_tf.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="run directory of rearec_tf.train")
    p.add_argument("--export-dir", required=True, help="model base path, e.g. models/rearec")
    p.add_argument("--version", type=int, default=None, help="version number (default: next)")
    p.add_argument("--checkpoint", default="best", help="best | latest | an epoch number")
    p.add_argument("--model-name", default="rearec", help="model name in the warm-up requests")
    p.add_argument("--no-warmup", action="store_true", help="skip assets.extra warm-up requests")
    p.add_argument("--xla", action="store_true",
                   help="compile the encoder + reasoning loop with XLA (faster serving; TF "
                        "Serving must run with --xla_cpu_compilation_enabled=true, see README)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.version is not None and os.path.exists(os.path.join(args.export_dir, str(args.version))):
            raise FileExistsError(f"{os.path.join(args.export_dir, str(args.version))!r} already "
                                  f"exists: choose another --version (versions present: "
                                  f"{_versions(args.export_dir)})")
        config, vocab, model = rd.load_run(args.run_dir, args.checkpoint)
        path = export_model(model, config, vocab, args.export_dir, version=args.version,
                            run_dir=args.run_dir, checkpoint=args.checkpoint,
                            warmup=not args.no_warmup, model_name=args.model_name, xla=args.xla)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
