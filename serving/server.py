"""A local model server speaking TensorFlow Serving's gRPC (and REST) API, for
development, tests and benchmarks.

::

    python -m serving.server --model_base_path models/rearec --port 8500 \\
        [--host 127.0.0.1] [--model_name rearec] [--rest_api_port 8501] [--enable_batching]

It serves ANY SavedModel export laid out as TF Serving expects (``BASE/<int version>/``)
as TF Serving loads it (the MetaGraph tagged ``serve`` in a Session of its own, signatures run
by feeding and fetching their tensors) — no rearec_tf code is imported:

- ``tensorflow.serving.PredictionService``: ``Predict`` and ``GetModelMetadata``
  (``signature_def`` metadata, a packed ``SignatureDefMap`` as TF Serving returns it);
  ``Classify``/``Regress``/``MultiInference`` answer ``UNIMPLEMENTED``.
- ``tensorflow.serving.ModelService``: ``GetModelStatus``.
- Versions: the ``--num_versions`` (2) highest integer versions are loaded; a request
  without a version gets the highest. The base path is polled every
  ``--poll_interval`` seconds: a new version is loaded fully (and warmed up with its
  ``assets.extra/tf_serving_warmup_requests``) before being swapped in atomically;
  requests in flight finish on the version they started on. Folders whose name is not
  an integer (e.g. ``.tmp-3-1234`` of an export in progress) are ignored; a version that
  fails to load is logged and skipped until its files change.
- Validation before the model runs (TF Serving's status codes): unknown model ->
  ``NOT_FOUND``, unknown version -> ``NOT_FOUND``, unknown signature, unknown/missing input
  (missing inputs take the SignatureDef ``defaults`` when present, as TF Serving does),
  wrong dtype or rank, batch > ``--max_batch_size`` (1024), any other dimension >
  ``--max_length`` (10000), scalar ``k`` > ``--max_k`` (1000) -> ``INVALID_ARGUMENT`` with
  a message saying what was expected. Errors raised by the model keep their TF status
  code (e.g. a failed ``tf.debugging`` assertion -> ``INVALID_ARGUMENT``).
- ``--enable_batching``: requests for the same version and signature, with the same
  scalar inputs and the same non-batch dimensions, arriving within
  ``--batch_timeout_micros`` are concatenated along the batch dimension (up to
  ``--max_batch_rows`` rows) and run once by one of ``--num_batch_threads`` threads.
  Requests already queued when the timeout expires join the batch too, so
  ``--batch_timeout_micros 0`` gives "natural" batching: no waiting, and whatever queued
  up while the previous batch ran is merged. ``--adaptive_batching`` (this server only, not
  TF Serving's): a batch also closes as soon as it holds as many requests as the server
  recently had in flight at once (less those being run), so a lone client is not held for
  the timeout and N steady clients are merged into one batch instead of alternating
  groups. The batch sizes and queue waits are logged at shutdown.
- ``--batching_parameters_file PATH`` (with ``--enable_batching``): TF Serving's
  ``BatchingParameters`` text proto, e.g. ``serving/batching_parameters.txt``; its
  ``max_batch_size``, ``batch_timeout_micros``, ``num_batch_threads`` replace the flags
  above, ``allowed_batch_sizes`` pads each batch to the next allowed size with copies of
  its first row (as TF Serving does; the padding rows' outputs are dropped), and
  ``max_enqueued_batches`` x ``max_batch_size`` bounds the rows waiting: a request beyond
  it gets ``UNAVAILABLE`` (the client retries). Fields this server does not apply are
  refused with a message, so a file that works here works in TF Serving too.
- ``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism``: as in
  ``tensorflow_model_server`` (0 = TensorFlow's defaults).
- SIGTERM/SIGINT: stop accepting, let in-flight requests finish (grace 5 s), exit 0.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import any_pb2, json_format  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,  # noqa: E402
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_log_pb2, prediction_service_pb2_grpc)

from serving.tensors import make_tensor_proto, tensor_proto_to_ndarray  # noqa: E402

logger = logging.getLogger("serving.server")

DEFAULT_SIGNATURE = "serving_default"
WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")


class ServingError(Exception):
    """An error answered to the client with a gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _tf_error_code(e: tf.errors.OpError) -> grpc.StatusCode:
    for c in grpc.StatusCode:
        if c.value[0] == e.error_code:
            return c
    return grpc.StatusCode.INTERNAL


def _tf_error_message(e: tf.errors.OpError) -> str:
    msg = e.message or str(e)
    # Keep the assertion text, drop TF's stack-trace noise.
    for line in msg.splitlines():
        if "assertion failed" in line or "must be" in line:
            return line.strip()
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__


# ------------------------------------------------------------------ servables
class InputSpec(NamedTuple):
    """One signature input, decoded once from its ``TensorInfo`` (the request path then
    compares plain ints and tuples instead of reading protos and ``tf.DType`` objects)."""

    dtype: int  # types_pb2 enum
    tf_dtype: Optional[tf.DType]  # None for an enum TensorFlow has no DType for
    dims: Optional[Tuple[int, ...]]  # None = unknown rank; -1 = any size
    batched: bool  # known rank >= 1 whose dimension 0 is free: the batch dimension

    @classmethod
    def of(cls, info) -> "InputSpec":
        shape = info.tensor_shape
        dims = None if shape.unknown_rank else tuple(d.size for d in shape.dim)
        try:
            tf_dtype = tf.as_dtype(info.dtype)
        except TypeError:
            tf_dtype = None
        return cls(info.dtype, tf_dtype, dims, bool(dims) and dims[0] == -1)


@dataclass
class Servable:
    """One loaded version of the model."""

    version: int
    path: str
    session: object  # the tf.compat.v1.Session holding the MetaGraph
    signature_defs: Dict[str, object]  # name -> meta_graph_pb2.SignatureDef
    functions: Dict[str, object] = field(default_factory=dict)
    # (signature, input alias) -> the signature's default value, decoded once (read-only)
    defaults: Dict[Tuple[str, str], np.ndarray] = field(default_factory=dict)
    # signature -> input alias -> its spec
    specs: Dict[str, Dict[str, InputSpec]] = field(default_factory=dict)

    @classmethod
    def load(cls, version: int, path: str) -> "Servable":
        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        metas = [m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags] or list(sm.meta_graphs)
        if not metas:
            raise ValueError(f"{path}: no MetaGraph")
        # As TF Serving does: the MetaGraph tagged "serve" in a Session of its own, each
        # signature run by feeding and fetching its tensors (a Session callable skips the
        # Python wrapping of a restored tf.function: 0.88-0.92x the call time at batch 1-8).
        graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
            inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads(),
            allow_soft_placement=True)
        session = tf.compat.v1.Session(graph=graph, config=config)
        with graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(session, list(metas[0].meta_info_def.tags), path)
        sigdefs = dict(meta.signature_def)
        functions = {name: SessionSignature(session, sd) for name, sd in sigdefs.items()}
        defaults = {}
        for name, sd in sigdefs.items():
            for alias, proto in sd.defaults.items():
                arr = to_ndarray(proto)
                arr.flags.writeable = False
                defaults[(name, alias)] = arr
        specs = {name: {alias: InputSpec.of(info) for alias, info in sd.inputs.items()}
                 for name, sd in sigdefs.items()}
        return cls(version, path, session, sigdefs, functions, defaults, specs)


class SessionSignature:
    """One SignatureDef of a loaded Session: numpy inputs by alias -> numpy outputs by alias.
    A Session callable is made once per set of inputs fed (thread-safe, as Session.run is)."""

    def __init__(self, session, signature_def):
        self.session = session
        self.inputs = {a: info.name for a, info in signature_def.inputs.items()}
        self.outputs = sorted(signature_def.outputs)
        self._fetches = [signature_def.outputs[a].name for a in self.outputs]
        self._callables: Dict[Tuple[str, ...], Any] = {}

    def __call__(self, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        aliases = tuple(sorted(arrays))  # validated against the signature by resolve_inputs
        call = self._callables.get(aliases)
        if call is None:
            call = self.session.make_callable(self._fetches, [self.inputs[a] for a in aliases])
            self._callables[aliases] = call
        return dict(zip(self.outputs, call(*[arrays[a] for a in aliases])))


@dataclass
class Limits:
    max_batch_size: int = 1024
    max_length: int = 10_000
    max_k: int = 1000


def to_ndarray(proto) -> np.ndarray:
    """A request ``TensorProto`` as numpy (strings as ``bytes``), by the fast converter
    of :mod:`serving.tensors` where it applies, else by TensorFlow's."""
    try:
        return tensor_proto_to_ndarray(proto, decode_strings=False)
    except TypeError:
        return tf.make_ndarray(proto)


def to_tensor_proto(arr: np.ndarray, out=None):
    """A response array as a ``TensorProto`` (fast converter, else TensorFlow's), written
    into ``out`` (an empty ``TensorProto``) when given."""
    try:
        return make_tensor_proto(arr, out)
    except TypeError:
        proto = tf.make_tensor_proto(arr)
        if out is None:
            return proto
        out.CopyFrom(proto)
        return out


def _dtype_name(dt: int) -> str:
    try:
        return tf.as_dtype(dt).name
    except TypeError:
        return types_pb2.DataType.Name(dt)


def resolve_inputs(servable: Servable, signature_name: str, inputs: Dict[str, object],
                   limits: Limits) -> Dict[str, np.ndarray]:
    """Validate request tensors (TensorProtos or numpy arrays) against the signature and
    fill defaults. Returns numpy arrays keyed by input alias."""
    specs = servable.specs.get(signature_name)
    if specs is None or signature_name not in servable.functions:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Serving signature name: \"{signature_name}\" not found in signature def; "
                           f"available: {sorted(servable.functions)}")
    out: Dict[str, np.ndarray] = {}
    for alias, value in inputs.items():
        spec = specs.get(alias)
        if spec is None:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input tensor alias not found in signature: {alias}. Inputs expected "
                               f"to be in the set {{{','.join(sorted(specs))}}}.")
        if isinstance(value, np.ndarray):
            arr = value
            got = tf.as_dtype(arr.dtype) if arr.dtype != object else tf.string
            if got != spec.tf_dtype:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Expects arg[{alias}] to be {_dtype_name(spec.dtype)} but "
                                   f"{got.name} is provided")
        else:
            if value.dtype != spec.dtype:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Expects arg[{alias}] to be {_dtype_name(spec.dtype)} but "
                                   f"{_dtype_name(value.dtype)} is provided")
            try:
                arr = to_ndarray(value)
            except Exception as e:  # noqa: BLE001 - malformed TensorProto
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {alias}: malformed tensor: {e}") from None
        _check_shape(alias, arr, spec, limits)
        out[alias] = arr
    for alias in specs:
        if alias in out:
            continue
        if (signature_name, alias) in servable.defaults:
            out[alias] = servable.defaults[(signature_name, alias)]
        else:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Signature input alias: {alias} not found in request and no default "
                               f"value provided. Inputs expected to be in the request "
                               f"{{{','.join(sorted(specs))}}}")
    batches = {a: v.shape[0] for a, v in out.items() if v.ndim >= 1 and specs[a].batched}
    if len(set(batches.values())) > 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"inputs must have the same batch size (dimension 0), got {batches}")
    return out


def _check_shape(alias: str, arr: np.ndarray, spec: InputSpec, limits: Limits) -> None:
    dims = spec.dims
    if dims is not None:
        if arr.ndim != len(dims):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias} must have rank {len(dims)} (shape "
                               f"{[d if d >= 0 else None for d in dims]}), got shape "
                               f"{list(arr.shape)}")
        for i, d in enumerate(dims):
            if d >= 0 and arr.shape[i] != d:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {alias}: dimension {i} must be {d}, got {arr.shape[i]}")
    if arr.ndim >= 1 and arr.shape[0] > limits.max_batch_size:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias}: batch size {arr.shape[0]} exceeds the limit "
                           f"{limits.max_batch_size} (--max_batch_size)")
    for i in range(1, arr.ndim):
        if arr.shape[i] > limits.max_length:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias}: dimension {i} is {arr.shape[i]}, over the limit "
                               f"{limits.max_length} (--max_length)")
    if alias == "k" and arr.ndim == 0 and arr.dtype.kind in "iu" and int(arr) > limits.max_k:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"k={int(arr)} exceeds the limit {limits.max_k} (--max_k)")


def run_signature(servable: Servable, signature_name: str, arrays: Dict[str, np.ndarray]
                  ) -> Dict[str, np.ndarray]:
    fn = servable.functions[signature_name]
    specs = servable.specs[signature_name]
    try:
        return fn({k: np.asarray(v, dtype=specs[k].tf_dtype.as_numpy_dtype)
                   if v.dtype != object else v for k, v in arrays.items()})
    except tf.errors.OpError as e:
        raise ServingError(_tf_error_code(e), _tf_error_message(e)) from None
    except (TypeError, ValueError) as e:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e).splitlines()[0]) from None


# --------------------------------------------------------------------- manager
class ModelManager:
    """Loads versions of one model from its base path and swaps new ones in atomically."""

    def __init__(self, name: str, base_path: str, num_versions: int = 2, poll_interval: float = 1.0,
                 limits: Optional[Limits] = None, warmup: bool = True):
        self.name = name
        self.base_path = os.path.abspath(base_path)
        self.num_versions = max(1, num_versions)
        self.poll_interval = poll_interval
        self.limits = limits or Limits()
        self.warmup = warmup
        self._servables: Dict[int, Servable] = {}  # replaced, never mutated
        self._loading: Dict[int, str] = {}
        self._failed: Dict[int, Tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- access
    def get(self, version: Optional[int] = None) -> Servable:
        servables = self._servables
        if not servables:
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               f"Servable not found for request: Latest({self.name}): no version "
                               f"loaded yet from {self.base_path}")
        if version is None:
            return servables[max(servables)]
        s = servables.get(version)
        if s is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({self.name}, {version}); "
                               f"available versions: {sorted(servables)}")
        return s

    def versions(self) -> Dict[int, str]:
        out = {v: "AVAILABLE" for v in self._servables}
        out.update({v: "LOADING" for v in dict(self._loading) if v not in out})
        return out

    # -- polling
    def _scan(self) -> Dict[int, str]:
        try:
            names = os.listdir(self.base_path)
        except FileNotFoundError:
            return {}
        found = {}
        for d in names:
            if d.isdigit():
                p = os.path.join(self.base_path, d)
                if os.path.isfile(os.path.join(p, "saved_model.pb")):
                    found[int(d)] = p
        return found

    def poll_once(self) -> None:
        found = self._scan()
        wanted = sorted(found)[-self.num_versions:]
        for v in sorted(wanted, reverse=True):  # newest first
            if v in self._servables:
                continue
            path = found[v]
            stamp = os.path.getmtime(os.path.join(path, "saved_model.pb"))
            if self._failed.get(v, (None,))[0] == stamp:
                continue
            self._loading[v] = path
            t0 = time.time()
            try:
                s = Servable.load(v, path)
                n = self._run_warmup(s) if self.warmup else 0
            except Exception as e:  # noqa: BLE001 - a bad version must not stop the server
                logger.error("failed to load %s version %d from %s: %s", self.name, v, path, e)
                self._failed[v] = (stamp, str(e))
                continue
            finally:
                self._loading.pop(v, None)
            with self._lock:
                new = dict(self._servables)
                new[v] = s
                self._servables = new  # atomic swap
            logger.info("loaded %s version %d (%s, %d warm-up requests) in %.1fs",
                        self.name, v, path, n, time.time() - t0)
        stale = [v for v in self._servables if v not in wanted]
        keep_any = [v for v in self._servables if v not in stale]
        if stale and keep_any:
            with self._lock:
                self._servables = {v: s for v, s in self._servables.items() if v not in stale}
            logger.info("unloaded %s version(s) %s", self.name, stale)

    def _run_warmup(self, s: Servable) -> int:
        path = os.path.join(s.path, WARMUP)
        if not os.path.exists(path):
            return 0
        n = 0
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if not log.HasField("predict_log"):
                continue
            req = log.predict_log.request
            sig = req.model_spec.signature_name or DEFAULT_SIGNATURE
            arrays = resolve_inputs(s, sig, dict(req.inputs), self.limits)
            run_signature(s, sig, arrays)
            n += 1
            if n >= 1000:
                break
        return n

    def start(self) -> None:
        self.poll_once()

        def loop():
            while not self._stop.wait(self.poll_interval):
                try:
                    self.poll_once()
                except Exception:  # noqa: BLE001
                    logger.exception("polling %s failed", self.base_path)

        self._thread = threading.Thread(target=loop, name="version-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------- batcher
# TF Serving's BatchingParameters (session_bundle_config.proto): wrapper fields are written
# `name { value: N }`, the rest `name: V`. The fields this server applies:
_WRAPPED = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
_PLAIN = ("allowed_batch_sizes", "pad_variable_length_inputs")
_BATCHING_FIELD = re.compile(r"(\w+)\s*(?:\{\s*value\s*:\s*([^\s{}]+)\s*\}|:\s*([^\s{}]+))")


def read_batching_parameters(path: str) -> Dict[str, Any]:
    """TF Serving's ``--batching_parameters_file`` (a ``BatchingParameters`` text proto) as
    ``{"max_batch_size": int, "batch_timeout_micros": int, "max_enqueued_batches": int,
    "num_batch_threads": int, "allowed_batch_sizes": [int], "pad_variable_length_inputs":
    bool}`` (only the fields present). A field this server does not apply, a wrapper field
    written without ``{ value: ... }`` or anything unparsable raises :class:`ValueError`
    naming the file and the text, so a file accepted here is one TF Serving accepts too."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"--batching_parameters_file {path}: cannot read it ({e.strerror})") from None
    text = re.sub(r"#[^\n]*", "", text)
    out: Dict[str, Any] = {}
    pos = 0
    for m in _BATCHING_FIELD.finditer(text):
        gap = text[pos:m.start()].strip()
        if gap:
            raise ValueError(f"--batching_parameters_file {path}: cannot parse {gap!r}")
        pos = m.end()
        name, wrapped, plain = m.group(1), m.group(2), m.group(3)
        if name not in _WRAPPED + _PLAIN:
            raise ValueError(f"--batching_parameters_file {path}: field {name!r} is not applied by "
                             f"this server (it applies {', '.join(_WRAPPED + _PLAIN)}); remove it "
                             f"for local runs")
        if (name in _WRAPPED) != (wrapped is not None):
            form = f"{name} {{ value: N }}" if name in _WRAPPED else f"{name}: V"
            raise ValueError(f"--batching_parameters_file {path}: write {name} as `{form}`, as "
                             f"TF Serving's BatchingParameters proto requires")
        value = wrapped if wrapped is not None else plain
        if name == "pad_variable_length_inputs":
            if value not in ("true", "false"):
                raise ValueError(f"--batching_parameters_file {path}: {name} must be true or false, "
                                 f"got {value!r}")
            out[name] = value == "true"
            continue
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"--batching_parameters_file {path}: {name} must be an integer, "
                             f"got {value!r}") from None
        if number < (0 if name == "batch_timeout_micros" else 1):
            raise ValueError(f"--batching_parameters_file {path}: {name} must be "
                             f"{'>= 0' if name == 'batch_timeout_micros' else '>= 1'}, got {number}")
        if name == "allowed_batch_sizes":
            out.setdefault(name, []).append(number)
        elif name in out:
            raise ValueError(f"--batching_parameters_file {path}: {name} is given twice")
        else:
            out[name] = number
    rest = text[pos:].strip()
    if rest:
        raise ValueError(f"--batching_parameters_file {path}: cannot parse {rest!r}")
    return out


class _Task(NamedTuple):
    """One queued request of the batcher."""
    key: Any  # requests with equal keys can be concatenated
    servable: "Servable"
    sig: str
    arrays: Dict[str, np.ndarray]
    rows: int
    future: cf.Future
    enqueued: float  # time.monotonic() at submit


class BatchStats:
    """What the batcher did: requests per merged batch and how long requests queued
    (enqueue to the start of their batch's model call). Logged at shutdown."""

    def __init__(self):
        self._lock = threading.Lock()
        self.sizes: Dict[int, int] = {}  # requests per batch -> number of batches
        self.waits_ms: List[float] = []

    def add(self, group, started: float) -> None:
        with self._lock:
            self.sizes[len(group)] = self.sizes.get(len(group), 0) + 1
            if len(self.waits_ms) < 1_000_000:
                self.waits_ms.extend((started - t.enqueued) * 1e3 for t in group)

    def summary(self) -> str:
        with self._lock:
            sizes, waits = dict(self.sizes), np.array(self.waits_ms)
        if not sizes:
            return "no batches"
        batches = sum(sizes.values())
        requests = sum(k * n for k, n in sizes.items())
        hist = ", ".join(f"{k}: {sizes[k]}" for k in sorted(sizes))
        p50, p99 = np.percentile(waits, [50, 99])
        return (f"{batches} batches of {requests} requests ({requests / batches:.2f} per batch; "
                f"requests per batch: batches = {hist}); queue wait p50 {p50:.2f} ms, "
                f"p99 {p99:.2f} ms, max {waits.max():.2f} ms")


class Batcher:
    """Concatenates compatible concurrent requests along dimension 0.

    A batch closes when it holds ``max_rows`` rows or when its oldest request has waited
    ``timeout_s`` since it was *enqueued* (TF Serving's ``batch_timeout_micros`` rule):
    requests that queued while the previous batch ran do not wait again.

    ``allowed_batch_sizes`` (TF Serving's): a merged batch of ``n`` rows is padded to the
    smallest allowed size >= ``n`` with copies of its first row, whose outputs are dropped;
    the last allowed size must equal ``max_rows``. ``max_enqueued_rows``: a request that
    would make more rows wait in the queue is refused with ``UNAVAILABLE`` (TF Serving's
    ``max_enqueued_batches`` x ``max_batch_size``); ``None``: no limit.

    With ``adaptive=True`` (not a TF Serving rule; ``--adaptive_batching``) a batch also
    closes as soon as it holds as many requests as the server can expect: the most
    requests it had in flight at once over the last second, less those in batches being
    run. One client alone is then never held for the timeout, while under a steady
    concurrency of N the batch waits (up to the timeout) for all N instead of splitting
    them into groups that queue behind each other's model calls."""

    PEAK_WINDOW_S = 0.5  # the peak is the larger of this and the previous window's

    def __init__(self, max_rows: int = 256, timeout_s: float = 0.002, workers: int = 2,
                 adaptive: bool = False, allowed_batch_sizes: Sequence[int] = (),
                 max_enqueued_rows: Optional[int] = None):
        allowed = self.check_allowed(allowed_batch_sizes, max_rows)
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.adaptive = adaptive
        self.allowed = allowed
        self.max_enqueued_rows = max_enqueued_rows
        self._queued_rows = 0  # rows submitted whose batch has not started
        self.stats = BatchStats()
        self._q: "queue.Queue" = queue.Queue()
        self._stop = False
        self._lock = threading.Lock()
        self._inflight = 0  # requests inside submit()
        self._running = 0  # requests in batches whose model call is running
        self._window = (time.monotonic(), 0, 0)  # (start, peak in it, peak in the previous)
        self._threads = [threading.Thread(target=self._loop, daemon=True, name=f"batcher-{i}")
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def _enter(self) -> None:
        with self._lock:
            self._inflight += 1
            now, (start, cur, prev) = time.monotonic(), self._window
            if now - start >= self.PEAK_WINDOW_S:
                prev = cur if now - start < 2 * self.PEAK_WINDOW_S else 0
                start, cur = now, 0
            self._window = (start, max(cur, self._inflight), prev)

    def _leave(self) -> None:
        with self._lock:
            self._inflight -= 1

    def expected(self) -> int:
        """Requests a batch being formed can expect (adaptive mode)."""
        with self._lock:
            _, cur, prev = self._window
            return max(1, max(cur, prev) - self._running)

    @staticmethod
    def _key(servable: Servable, sig: str, arrays: Dict[str, np.ndarray]):
        specs = servable.specs[sig]
        parts = []
        for a in sorted(arrays):
            v = arrays[a]
            if v.ndim >= 1 and specs[a].batched:
                parts.append((a, "B", v.dtype.str, v.shape[1:]))
            else:
                parts.append((a, "S", v.dtype.str, v.shape, v.tobytes() if v.dtype != object
                              else tuple(v.reshape(-1).tolist())))
        return (servable.version, id(servable), sig, tuple(parts))

    def submit(self, servable: Servable, sig: str, arrays: Dict[str, np.ndarray]):
        rows = next((v.shape[0] for v in arrays.values() if v.ndim >= 1), 0)
        if rows == 0 or rows >= self.max_rows:
            return run_signature(servable, sig, arrays)
        fut: cf.Future = cf.Future()
        with self._lock:
            if (self.max_enqueued_rows is not None
                    and self._queued_rows + rows > self.max_enqueued_rows):
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   f"The batch scheduling queue is full ({self._queued_rows} rows "
                                   f"waiting, limit {self.max_enqueued_rows} = max_enqueued_batches "
                                   f"x max_batch_size): retry later, or raise max_enqueued_batches")
            self._queued_rows += rows
        self._enter()
        try:
            self._q.put(_Task(self._key(servable, sig, arrays), servable, sig, arrays, rows, fut,
                              time.monotonic()))
            return fut.result()
        finally:
            self._leave()

    def _full(self, group, rows: int) -> bool:
        return rows >= self.max_rows or (self.adaptive and len(group) >= self.expected())

    def _loop(self):
        pending: List = []
        while not self._stop:
            first = pending.pop(0) if pending else self._q.get()
            if first is None:
                return
            group, rows = [first], first.rows
            deadline = first.enqueued + self.timeout_s  # from the oldest request's arrival
            keep = []
            for item in pending:  # items of other keys left from the previous round
                if item.key == first.key and rows + item.rows <= self.max_rows:
                    group.append(item)
                    rows += item.rows
                else:
                    keep.append(item)
            pending = keep
            while not self._full(group, rows):
                left = deadline - time.monotonic()
                try:  # past the deadline, still take what is already queued
                    item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._stop = True
                    break
                if item.key == first.key and rows + item.rows <= self.max_rows:
                    group.append(item)
                    rows += item.rows
                else:
                    pending.append(item)
            self.stats.add(group, time.monotonic())
            with self._lock:
                self._running += len(group)
                self._queued_rows -= rows
            try:
                self._run(group)
            finally:
                with self._lock:
                    self._running -= len(group)

    @staticmethod
    def check_allowed(allowed_batch_sizes: Sequence[int], max_rows: int) -> List[int]:
        """``allowed_batch_sizes`` as a list, checked as TF Serving checks it."""
        allowed = [int(n) for n in allowed_batch_sizes]
        if allowed and (allowed != sorted(set(allowed)) or allowed[0] < 1 or allowed[-1] != max_rows):
            raise ValueError(f"allowed_batch_sizes {allowed} must increase strictly, start at >= 1 "
                             f"and end at max_batch_size ({max_rows}), as TF Serving requires")
        return allowed

    def padded_rows(self, rows: int) -> int:
        """The rows a batch of ``rows`` is run with: the smallest allowed batch size that
        holds them (``rows`` itself without ``allowed_batch_sizes``)."""
        return next((n for n in self.allowed if n >= rows), rows)

    def _run(self, group):
        servable, sig = group[0].servable, group[0].sig
        total = sum(t.rows for t in group)
        pad = self.padded_rows(total) - total
        if len(group) == 1 and not pad:
            try:
                group[0].future.set_result(run_signature(servable, sig, group[0].arrays))
            except Exception as e:  # noqa: BLE001
                group[0].future.set_exception(e)
            return
        specs = servable.specs[sig]
        merged = {}
        for a, v in group[0].arrays.items():
            if v.ndim >= 1 and specs[a].batched:
                parts = [t.arrays[a] for t in group]
                if pad:  # as TF Serving pads: copies of the batch's first row
                    parts.append(np.repeat(parts[0][:1], pad, axis=0))
                merged[a] = np.concatenate(parts, axis=0)
            else:
                merged[a] = v
        try:
            out = run_signature(servable, sig, merged)
            if any(o.ndim == 0 or o.shape[0] != total + pad for o in out.values()):
                raise ValueError("outputs not batched along dimension 0")
        except Exception:  # noqa: BLE001 - fall back to one request at a time
            for t in group:
                try:
                    t.future.set_result(run_signature(servable, sig, t.arrays))
                except Exception as e:  # noqa: BLE001
                    t.future.set_exception(e)
            return
        start = 0
        for t in group:
            t.future.set_result({k: o[start:start + t.rows] for k, o in out.items()})
            start += t.rows

    def stop(self):
        self._stop = True
        for _ in self._threads:
            self._q.put(None)


# ------------------------------------------------------------------- services
class Core:
    """What both the gRPC and the REST front-ends call."""

    def __init__(self, manager: ModelManager, batcher: Optional[Batcher] = None):
        self.manager = manager
        self.batcher = batcher

    def servable(self, name: str, version: Optional[int]) -> Servable:
        if name != self.manager.name:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name}); this server "
                               f"serves model {self.manager.name!r}")
        return self.manager.get(version)

    def predict(self, name: str, version: Optional[int], signature: str, inputs: Dict[str, object],
                output_filter=()) -> Tuple[Servable, str, Dict[str, np.ndarray]]:
        s = self.servable(name, version)
        sig = signature or DEFAULT_SIGNATURE
        arrays = resolve_inputs(s, sig, inputs, self.manager.limits)
        wanted = list(output_filter)
        outputs_def = s.signature_defs[sig].outputs
        for o in wanted:
            if o not in outputs_def:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"output tensor alias not found in signature: {o} Outputs "
                                   f"expected to be in the set {{{','.join(sorted(outputs_def))}}}.")
        if self.batcher is not None:
            out = self.batcher.submit(s, sig, arrays)
        else:
            out = run_signature(s, sig, arrays)
        if wanted:
            out = {k: v for k, v in out.items() if k in wanted}
        return s, sig, out


def _grpc_call(fn):
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except ServingError as e:
            context.abort(e.code, e.message)
        except Exception as e:  # noqa: BLE001 - never kill the server on a request
            logger.exception("internal error")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    wrapper.__name__ = fn.__name__
    return wrapper


def _version_of(spec) -> Optional[int]:
    if spec.HasField("version"):
        return int(spec.version.value)
    if spec.version_label:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"version labels are not configured on this server "
                           f"(got {spec.version_label!r}); ask for a version number")
    return None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: Core):
        self.core = core

    @_grpc_call
    def Predict(self, request, context):
        spec = request.model_spec
        s, sig, out = self.core.predict(spec.name, _version_of(spec), spec.signature_name,
                                        dict(request.inputs), request.output_filter)
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name = spec.name
        resp.model_spec.version.value = s.version
        resp.model_spec.signature_name = sig
        for k, v in out.items():
            to_tensor_proto(v, resp.outputs[k])
        return resp

    @_grpc_call
    def GetModelMetadata(self, request, context):
        spec = request.model_spec
        fields = list(request.metadata_field)
        if not fields:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
        for f in fields:
            if f != "signature_def":
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Metadata field {f} is not supported")
        s = self.core.servable(spec.name, _version_of(spec))
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = spec.name
        resp.model_spec.version.value = s.version
        sdm = get_model_metadata_pb2.SignatureDefMap()
        for k, v in s.signature_defs.items():
            sdm.signature_def[k].CopyFrom(v)
        packed = any_pb2.Any()
        packed.Pack(sdm)
        resp.metadata["signature_def"].CopyFrom(packed)
        return resp

    def _unimplemented(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "only Predict and GetModelMetadata are served")

    Classify = Regress = MultiInference = _unimplemented


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: Core):
        self.core = core

    @_grpc_call
    def GetModelStatus(self, request, context):
        spec = request.model_spec
        if spec.name != self.core.manager.name:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {spec.name}")
        versions = self.core.manager.versions()
        want = _version_of(spec)
        if want is not None:
            if want not in versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {want} of model {spec.name}")
            versions = {want: versions[want]}
        resp = get_model_status_pb2.GetModelStatusResponse()
        State = get_model_status_pb2.ModelVersionStatus.State
        for v in sorted(versions, reverse=True):
            st = resp.model_version_status.add()
            st.version = v
            st.state = State.Value(versions[v])
            st.status.error_code = 0
        return resp

    @_grpc_call
    def HandleReloadConfigRequest(self, request, context):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "this server serves one model from --model_base_path")


# ------------------------------------------------------------------------ REST
_HTTP = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
         grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.UNIMPLEMENTED: 501,
         grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400}


def _to_json(v: np.ndarray):
    if v.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b,
                            otypes=[object])(v).tolist() if v.size else v.tolist()
    return v.tolist()


def make_rest_handler(core: Core):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet
            logger.debug(fmt, *args)

        def _send(self, code: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self):
            path = self.path.split("?")[0]
            if not path.startswith("/v1/models/"):
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {path}")
            rest = path[len("/v1/models/"):]
            verb = None
            if ":" in rest:
                rest, verb = rest.rsplit(":", 1)
            parts = rest.split("/")
            name, version, extra = parts[0], None, parts[1:]
            if len(extra) >= 2 and extra[0] == "versions":
                version = int(extra[1]) if extra[1].isdigit() else None
                extra = extra[2:]
            return name, version, extra, verb

        def do_GET(self):
            try:
                name, version, extra, _ = self._route()
                if extra == ["metadata"]:
                    s = core.servable(name, version)
                    sdm = get_model_metadata_pb2.SignatureDefMap()
                    for k, v in s.signature_defs.items():
                        sdm.signature_def[k].CopyFrom(v)
                    self._send(200, {"model_spec": {"name": name, "signature_name": "",
                                                    "version": str(s.version)},
                                     "metadata": {"signature_def": json_format.MessageToDict(sdm)}})
                    return
                if name != core.manager.name:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Could not find any versions of model {name}")
                vs = core.manager.versions()
                if version is not None:
                    vs = {v: st for v, st in vs.items() if v == version}
                self._send(200, {"model_version_status": [
                    {"version": str(v), "state": st, "status": {"error_code": "OK", "error_message": ""}}
                    for v, st in sorted(vs.items(), reverse=True)]})
            except ServingError as e:
                self._send(_HTTP.get(e.code, 500), {"error": e.message})

        def do_POST(self):
            try:
                name, version, _, verb = self._route()
                if verb != "predict":
                    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"unsupported verb {verb!r}")
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except json.JSONDecodeError as e:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON parse error: {e}") from None
                s = core.servable(name, version)
                sig = body.get("signature_name") or DEFAULT_SIGNATURE
                sd = s.signature_defs.get(sig)
                if sd is None:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Serving signature name: \"{sig}\" not found in signature def")
                row_format = "instances" in body
                raw = body.get("inputs") if not row_format else body["instances"]
                if row_format:
                    if raw and isinstance(raw[0], dict):
                        raw = {k: [r[k] for r in raw] for k in raw[0]}
                    else:
                        raw = {next(iter(sd.inputs)): raw}
                if not isinstance(raw, dict):
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       "body must hold \"inputs\" (an object of named inputs) or "
                                       "\"instances\"")
                inputs = {}
                for k, v in raw.items():
                    if k not in sd.inputs:
                        inputs[k] = np.asarray(v)  # rejected with the standard message
                        continue
                    dt = tf.as_dtype(sd.inputs[k].dtype)
                    try:
                        if dt == tf.string:
                            arr = np.asarray(v, dtype=object)
                            arr = np.vectorize(lambda x: str(x).encode(), otypes=[object])(arr) \
                                if arr.size else arr.astype(object)
                        else:
                            arr = np.asarray(v, dtype=dt.as_numpy_dtype)
                    except (TypeError, ValueError) as e:
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                           f"input {k}: cannot convert to {dt.name}: {e}") from None
                    inputs[k] = arr
                s, sig, out = core.predict(name, version, sig, inputs)
                if row_format:
                    self._send(200, {"predictions": [{k: _to_json(v[i]) for k, v in out.items()}
                                                     for i in range(len(next(iter(out.values()))))]})
                else:
                    self._send(200, {"outputs": {k: _to_json(v) for k, v in out.items()}})
            except ServingError as e:
                self._send(_HTTP.get(e.code, 500), {"error": e.message})
            except Exception as e:  # noqa: BLE001
                logger.exception("internal error")
                self._send(500, {"error": f"{type(e).__name__}: {e}"})

    return Handler


# ------------------------------------------------------------------------ main
def serve(args) -> int:
    limits = Limits(args.max_batch_size, args.max_length, args.max_k)
    manager = ModelManager(args.model_name, args.model_base_path, args.num_versions,
                           args.poll_interval, limits, warmup=not args.no_warmup)
    manager.start()
    batcher = (Batcher(args.max_batch_rows, args.batch_timeout_micros / 1e6, args.num_batch_threads,
                       adaptive=args.adaptive_batching, allowed_batch_sizes=args.allowed_batch_sizes,
                       max_enqueued_rows=(args.max_enqueued_batches * args.max_batch_rows
                                          if args.max_enqueued_batches else None))
               if args.enable_batching else None)
    core = Core(manager, batcher)
    opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
            ("grpc.so_reuseport", 0)]
    server = grpc.server(cf.ThreadPoolExecutor(max_workers=args.threads), options=opts)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
    bound = server.add_insecure_port(f"{args.host}:{args.port}")
    if bound == 0:
        logger.error("cannot bind %s:%d", args.host, args.port)
        return 1
    server.start()
    http = None
    if args.rest_api_port:
        http = ThreadingHTTPServer((args.host, args.rest_api_port), make_rest_handler(core))
        http.daemon_threads = True
        threading.Thread(target=http.serve_forever, daemon=True, name="rest").start()
    logger.info("serving %s from %s on gRPC %s:%d%s (versions %s, batching %s)", args.model_name,
                manager.base_path, args.host, bound,
                f", REST {args.host}:{args.rest_api_port}" if http else "",
                sorted(manager.versions()), "on" if batcher else "off")
    print(f"READY {args.host}:{bound}", flush=True)

    done = threading.Event()

    def on_signal(signum, frame):
        logger.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(1.0):
        pass
    manager.stop()
    server.stop(grace=5.0).wait(6.0)
    if http is not None:
        http.shutdown()
    if batcher is not None:
        batcher.stop()
        logger.info("batching: %s", batcher.stats.summary())
    logger.info("stopped")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model_base_path", required=True)
    p.add_argument("--model_name", default="rearec")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port (0 = no REST API)")
    p.add_argument("--num_versions", type=int, default=2, help="latest versions kept loaded")
    p.add_argument("--poll_interval", type=float, default=1.0, help="seconds between base-path scans")
    p.add_argument("--threads", type=int, default=16, help="gRPC worker threads")
    p.add_argument("--max_batch_size", type=int, default=1024)
    p.add_argument("--max_length", type=int, default=10_000)
    p.add_argument("--max_k", type=int, default=1000)
    p.add_argument("--enable_batching", action="store_true")
    p.add_argument("--max_batch_rows", type=int, default=256, help="rows per merged batch")
    p.add_argument("--batch_timeout_micros", type=int, default=2000)
    p.add_argument("--num_batch_threads", type=int, default=2,
                   help="threads running merged batches (TF Serving's num_batch_threads)")
    p.add_argument("--adaptive_batching", action="store_true",
                   help="also close a batch once it holds as many requests as were recently in "
                        "flight at once (not a TF Serving rule; see the module docstring)")
    p.add_argument("--batching_parameters_file", metavar="PATH",
                   help="TF Serving's BatchingParameters text proto (e.g. "
                        "serving/batching_parameters.txt): its max_batch_size, batch_timeout_micros, "
                        "num_batch_threads, max_enqueued_batches and allowed_batch_sizes replace the "
                        "flags above; needs --enable_batching")
    p.add_argument("--no_warmup", action="store_true", help="skip assets.extra warm-up requests")
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                   help="threads inside one op (0 = TensorFlow's default: one per core)")
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                   help="ops run concurrently (0 = TensorFlow's default)")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.allowed_batch_sizes, args.max_enqueued_batches = [], 0
    if args.batching_parameters_file:
        if not args.enable_batching:
            p.error("--batching_parameters_file needs --enable_batching (as in tensorflow_model_server)")
        try:
            params = read_batching_parameters(args.batching_parameters_file)
        except ValueError as e:
            p.error(str(e))
        if params.get("pad_variable_length_inputs"):
            p.error(f"--batching_parameters_file {args.batching_parameters_file}: "
                    "pad_variable_length_inputs: true is not supported by this server; pad histories "
                    "to one length in the client (RecommenderClient(pad_to=...)) instead")
        args.max_batch_rows = params.get("max_batch_size", args.max_batch_rows)
        args.batch_timeout_micros = params.get("batch_timeout_micros", args.batch_timeout_micros)
        args.num_batch_threads = params.get("num_batch_threads", args.num_batch_threads)
        args.max_enqueued_batches = params.get("max_enqueued_batches", 0)
        args.allowed_batch_sizes = params.get("allowed_batch_sizes", [])
        try:
            Batcher.check_allowed(args.allowed_batch_sizes, args.max_batch_rows)
        except ValueError as e:
            p.error(f"--batching_parameters_file {args.batching_parameters_file}: {e}")
    if args.num_batch_threads < 1:
        p.error("--num_batch_threads must be >= 1")
    if min(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism) < 0:
        p.error("--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism must be >= 0")
    # Same flags as tensorflow_model_server; must be set before TensorFlow runs any op.
    tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    return serve(args)


if __name__ == "__main__":
    code = main()
    # Exit without interpreter finalisation: after the clean shutdown above, TF's and
    # gRPC's native threads can still be inside C++ when CPython tears threads down, which
    # aborts the process ("terminate called ... exception not rethrown", exit -6).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
