"""Client library and CLI for a ReaRec model behind TensorFlow Serving's gRPC API
(the real ``tensorflow/serving`` or :mod:`serving.server`).

Library::

    from serving.client import RecommenderClient
    with RecommenderClient("127.0.0.1:8500", model="rearec", timeout=5.0) as c:
        rec = c.recommend([["item1", "item7"], ["item3"]], k=10)
        rec["item_ids"], rec["scores"], rec["num_unknown"], rec["model_version"]
        c.embed([["item1"]])["embedding"]
        c.score([["item1"]], candidates=[["item2", "item9"]])["scores"]
        c.metadata(), c.status()

Histories are lists of external ids, oldest first (most recent LAST), of any lengths:
the client left-pads them (``""`` for string ids, ``-1`` for integer ids), to the longest
history of the request or to ``pad_to`` columns if that is wider: with
``RecommenderClient(..., pad_to=50)`` (the model's ``max_len``) every request has the
same shape and server-side batching can merge requests of different users. Integer ids
(Python/numpy ints) go to the ``*_int`` signatures, anything else to the string ones.

Every call has a deadline (``timeout`` seconds per attempt) and is retried with
exponential backoff on ``UNAVAILABLE`` (at most ``retries`` times); any other failure
raises :class:`RecommendationError` naming the status code and the server's message.

CLI (prints JSON)::

    python -m serving.client recommend --server 127.0.0.1:8500 --model rearec \\
        --history 12,7,3 --history 5 --k 10 [--keep-history] [--steps 2]
    python -m serving.client embed --history 12,7,3
    python -m serving.client score --history 12,7,3 --candidates 4,5,6
    python -m serving.client metadata
    python -m serving.client status
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving.tensors import make_tensor_proto, tensor_proto_to_ndarray  # re-exported

__all__ = ["RecommendationError", "RecommenderClient", "pad_histories", "make_tensor_proto",
           "tensor_proto_to_ndarray"]


class RecommendationError(Exception):
    """A failed call: ``code`` (e.g. ``"INVALID_ARGUMENT"``), ``details`` (server message)."""

    def __init__(self, code: str, details: str, method: str = "", attempts: int = 1):
        self.code = code
        self.details = details
        self.method = method
        self.attempts = attempts
        super().__init__(f"{method} failed with {code}: {details}"
                         + (f" (after {attempts} attempts)" if attempts > 1 else ""))


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def check_pad_to(pad_to: int) -> int:
    """``pad_to`` of the clients: send every history at least this wide (e.g. the model's
    ``max_len``), so that requests of different users have one shape and a server's
    request batching (TF Serving's or ``--enable_batching``) can merge them."""
    if not isinstance(pad_to, (int, np.integer)) or pad_to < 0:
        raise ValueError(f"pad_to must be an integer >= 0 (0 = no padding), got {pad_to!r}")
    return int(pad_to)


def pad_histories(histories, width: int = 0) -> Tuple[np.ndarray, bool]:
    """Left-pad histories (most recent last) into a 2-D array; returns ``(array, is_int)``:
    int64 padded with -1 when every id is an integer, else strings padded with ``""``.
    The array is at least ``width`` columns wide (never truncated: a longer history is
    sent whole, since ``exclude_history`` uses all of it)."""
    if isinstance(histories, np.ndarray) and histories.ndim == 2:
        is_int = histories.dtype.kind in "iu"
        arr = histories.astype(np.int64) if is_int else histories.astype(object)
        if arr.shape[1] < width:
            pad = np.full((arr.shape[0], width - arr.shape[1]), -1 if is_int else "", arr.dtype)
            arr = np.concatenate([pad, arr], axis=1)
        return arr, is_int
    rows = [list(h) for h in histories]
    flat = [x for r in rows for x in r]
    is_int = bool(flat) and all(_is_int(x) for x in flat)
    length = max([len(r) for r in rows] + [0, width])
    if is_int:
        out = np.full((len(rows), length), -1, np.int64)
    else:
        out = np.full((len(rows), length), "", object)
    for i, r in enumerate(rows):
        if r:
            out[i, length - len(r):] = r if is_int else [str(x) for x in r]
    return out, is_int


# ---------------------------------------------------------------------- client
class RetryPolicy:
    """Deadline and bounded, jittered exponential backoff shared by the gRPC and REST
    clients."""

    def __init__(self, timeout: float = 10.0, retries: int = 3, backoff: float = 0.1,
                 max_backoff: float = 2.0):
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def _sleep(self, attempt: int) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        time.sleep(delay * (0.5 + random.random() / 2))


class RecommenderClient(RetryPolicy):
    """gRPC client of one model on TF Serving's PredictionService / ModelService."""

    def __init__(self, server: str = "127.0.0.1:8500", model: str = "rearec", timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.1, max_backoff: float = 2.0,
                 version: Optional[int] = None, channel: Optional[grpc.Channel] = None,
                 pad_to: int = 0):
        super().__init__(timeout, retries, backoff, max_backoff)
        self.pad_to = check_pad_to(pad_to)
        self.server = server
        self.model = model
        self.version = version
        self._channel = channel or grpc.insecure_channel(
            server, options=[("grpc.max_receive_message_length", 64 << 20),
                             ("grpc.max_send_message_length", 64 << 20)])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ transport
    def _call(self, method, request, name: str):
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
                if code == grpc.StatusCode.UNAVAILABLE and attempt <= self.retries:
                    self._sleep(attempt)
                    continue
                details = e.details() if hasattr(e, "details") else str(e)
                raise RecommendationError(code.name, details or "", name, attempt) from None

    def _spec(self, spec, signature: Optional[str] = None):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        if signature is not None:
            spec.signature_name = signature

    # ---------------------------------------------------------------- calls
    def predict(self, signature: str, inputs: Dict[str, Any], output_filter: Sequence[str] = ()
                ) -> Dict[str, Any]:
        """Generic Predict: numpy-convertible inputs -> numpy outputs (+ ``model_version``)."""
        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec, signature)
        for k, v in inputs.items():
            req.inputs[k].CopyFrom(v if isinstance(v, tensor_pb2.TensorProto) else make_tensor_proto(v))
        req.output_filter.extend(output_filter)
        resp = self._call(self._predict.Predict, req, f"Predict[{signature}]")
        out: Dict[str, Any] = {k: tensor_proto_to_ndarray(v) for k, v in resp.outputs.items()}
        out["model_version"] = int(resp.model_spec.version.value)
        return out

    def _common(self, histories, steps):
        hist, is_int = pad_histories(histories, self.pad_to)
        inputs: Dict[str, Any] = {"history": hist}
        if steps is not None:
            inputs["steps"] = np.int32(steps)
        return inputs, is_int

    def recommend(self, histories, k: int = 10, exclude_history: bool = True,
                  steps: Optional[int] = None, signature: Optional[str] = None) -> Dict[str, Any]:
        """Top-``k``: ``item_ids`` ``[B, k]``, ``scores`` ``[B, k]``, ``num_unknown`` ``[B]``."""
        inputs, is_int = self._common(histories, steps)
        inputs["k"] = np.int32(k)
        inputs["exclude_history"] = np.bool_(exclude_history)
        return self.predict(signature or ("recommend_int" if is_int else "recommend"), inputs)

    def embed(self, histories, steps: Optional[int] = None) -> Dict[str, Any]:
        """``embedding`` ``[B, d]`` and ``num_unknown`` ``[B]``."""
        inputs, is_int = self._common(histories, steps)
        return self.predict("user_embedding_int" if is_int else "user_embedding", inputs)

    def score(self, histories, candidates, steps: Optional[int] = None) -> Dict[str, Any]:
        """``scores`` ``[B, C]`` of ``candidates`` (one list per history; unknown -> -inf)."""
        inputs, is_int = self._common(histories, steps)
        cands, c_int = pad_histories(candidates)
        if c_int != is_int:  # make both the same kind of id
            is_int = False
            inputs["history"] = inputs["history"].astype(str).astype(object)
            inputs["history"][inputs["history"] == "-1"] = ""
            cands = cands.astype(str).astype(object)
            cands[cands == "-1"] = ""
        inputs["candidates"] = cands
        return self.predict("score_items_int" if is_int else "score_items", inputs)

    def metadata(self) -> Dict[str, Any]:
        """``{"version": int, "signatures": {name: {"inputs": {alias: {"dtype", "shape"}},
        "outputs": {...}, "defaults": [...]}}}`` from GetModelMetadata."""
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(req.model_spec)
        req.metadata_field.append("signature_def")
        resp = self._call(self._predict.GetModelMetadata, req, "GetModelMetadata")
        sdm = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sdm)

        def info(m):
            return {k: {"dtype": types_pb2.DataType.Name(v.dtype)[3:].lower(),
                        "shape": None if v.tensor_shape.unknown_rank else
                        [d.size if d.size >= 0 else None for d in v.tensor_shape.dim]}
                    for k, v in sorted(m.items())}

        sigs = {name: {"inputs": info(sd.inputs), "outputs": info(sd.outputs),
                       "defaults": sorted(sd.defaults)}
                for name, sd in sorted(sdm.signature_def.items())}
        return {"version": int(resp.model_spec.version.value), "signatures": sigs}

    def status(self) -> List[Dict[str, Any]]:
        """``[{"version": int, "state": "AVAILABLE"|..., "error_code": int}]``."""
        req = get_model_status_pb2.GetModelStatusRequest()
        self._spec(req.model_spec)
        resp = self._call(self._models.GetModelStatus, req, "GetModelStatus")
        State = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": int(s.version), "state": State.Name(s.state),
                 "error_code": int(s.status.error_code)} for s in resp.model_version_status]


# ------------------------------------------------------------------------- CLI
def _parse_history(s: str, as_int: bool):
    items = [x for x in s.split(",") if x != ""]
    return [int(x) for x in items] if as_int else items


def _jsonable(out: Dict[str, Any]) -> Dict[str, Any]:
    res = {}
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            if v.dtype.kind == "f":
                v = np.where(np.isfinite(v), v, None).tolist() if not np.isfinite(v).all() else v.tolist()
            else:
                v = v.tolist()
        res[k] = v
    return res


def main(argv=None, client_factory=None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["recommend", "embed", "score", "metadata", "status"])
    p.add_argument("--server", default="127.0.0.1:8500", help="host:port of the gRPC API")
    p.add_argument("--model", default="rearec")
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
    p.add_argument("--history", action="append", default=[],
                   help="comma-separated ids, oldest first; repeat for a batch ('' = empty)")
    p.add_argument("--candidates", action="append", default=[], help="comma-separated ids (score)")
    p.add_argument("--int-ids", action="store_true", help="ids are integers (*_int signatures)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--keep-history", action="store_true", help="allow history items in the top-k")
    p.add_argument("--steps", type=int, default=None, help="reasoning steps (default: trained K)")
    p.add_argument("--pad-to", type=int, default=0,
                   help="send histories at least this wide (e.g. the model's max_len)")
    args = p.parse_args(argv)
    factory = client_factory or RecommenderClient
    client = factory(args.server, model=args.model, timeout=args.timeout, retries=args.retries,
                     version=args.version, pad_to=args.pad_to)
    try:
        hist = [_parse_history(h, args.int_ids) for h in args.history]
        if args.command in ("recommend", "embed", "score") and not hist:
            p.error("--history is required")
        if args.command == "recommend":
            out = client.recommend(hist, k=args.k, exclude_history=not args.keep_history, steps=args.steps)
        elif args.command == "embed":
            out = client.embed(hist, steps=args.steps)
        elif args.command == "score":
            cands = [_parse_history(c, args.int_ids) for c in args.candidates]
            if len(cands) != len(hist):
                p.error("give one --candidates per --history")
            out = client.score(hist, cands, steps=args.steps)
        elif args.command == "metadata":
            out = client.metadata()
        else:
            out = {"model_version_status": client.status()}
        print(json.dumps(_jsonable(out) if isinstance(out, dict) else out, indent=2))
        return 0
    except RecommendationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
