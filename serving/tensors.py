"""numpy <-> ``TensorProto`` conversion for the serving client and server, without
TensorFlow's Python layer.

``tf.make_tensor_proto`` / ``tf.make_ndarray`` cost 45–100 µs per small tensor (dtype
inference, shape checks); a ``recommend`` call converts four to six tensors, which in a
Python server under load is a measurable share of the per-request CPU. These converters
handle the dtypes a ReaRec signature uses (float32/64, int32/64, bool, string) in a few
µs each and follow TensorFlow Serving's own decoding rules (``Tensor::FromProto``):

- numeric values come from ``tensor_content`` (raw little-endian bytes) or from the
  typed repeated field (``float_val``, ``int64_val``, ...);
- a repeated field with fewer values than the shape holds is completed by repeating its
  last value (so one value fills a tensor); an empty one gives zeros (empty strings);
- more values than the shape holds, or ``tensor_content`` of the wrong length, is a
  malformed tensor: :class:`ValueError`.

Other dtypes raise :class:`TypeError`; the server then falls back to TensorFlow's own
converters. This module imports no TensorFlow Python code, so the client stays light.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

__all__ = ["make_tensor_proto", "tensor_proto_to_ndarray", "NP_TO_DT", "DT_TO_NP"]

NP_TO_DT = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
            np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64,
            np.dtype(np.bool_): types_pb2.DT_BOOL}
DT_TO_NP = {v: k for k, v in NP_TO_DT.items()}
_VAL_FIELD = {types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
              types_pb2.DT_INT32: "int_val", types_pb2.DT_INT64: "int64_val",
              types_pb2.DT_BOOL: "bool_val"}


def make_tensor_proto(value, out: Optional[tensor_pb2.TensorProto] = None
                      ) -> tensor_pb2.TensorProto:
    """A numpy-convertible value as a ``TensorProto``: numbers as ``tensor_content``,
    strings (``str`` encoded as UTF-8, or ``bytes``) as ``string_val``. ``out``: an
    empty ``TensorProto`` to fill and return instead of a new one (e.g. a response's
    ``outputs[name]``, which saves a copy)."""
    arr = np.asarray(value)
    proto = tensor_pb2.TensorProto() if out is None else out
    dims = proto.tensor_shape.dim
    for d in arr.shape:
        dims.add().size = d
    if arr.dtype.kind in "OUS":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(x if isinstance(x, bytes) else str(x).encode("utf-8")
                                for x in arr.reshape(-1).tolist())
        return proto
    dt = NP_TO_DT.get(arr.dtype.newbyteorder("=") if arr.dtype.byteorder == ">" else arr.dtype)
    if dt is None:
        raise TypeError(f"unsupported dtype {arr.dtype} (supported: float32/64, int32/64, bool, "
                        f"string)")
    proto.dtype = dt
    proto.tensor_content = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return proto


def _fill(values: list, n: int, empty):
    if len(values) > n:
        raise ValueError(f"{len(values)} values for a tensor of {n} elements")
    if len(values) < n:
        values = values + [values[-1] if values else empty] * (n - len(values))
    return values


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto, decode_strings: bool = True
                            ) -> np.ndarray:
    """The ``TensorProto`` as a numpy array (a copy; writable). Strings become an object
    array of ``str`` (UTF-8, undecodable bytes replaced) or, with ``decode_strings=False``,
    of ``bytes`` as ``tf.make_ndarray`` returns them. Raises ``ValueError`` for a malformed
    tensor and ``TypeError`` for a dtype outside float32/64, int32/64, bool, string."""
    if proto.tensor_shape.unknown_rank:
        raise ValueError("tensor shape has unknown rank")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor shape {shape} has a negative dimension")
    n = math.prod(shape)
    if proto.dtype == types_pb2.DT_STRING:
        vals = list(proto.string_val)
        if decode_strings:
            vals = [b.decode("utf-8", "replace") for b in vals]
        vals = _fill(vals, n, "" if decode_strings else b"")
        out = np.empty(n, dtype=object)
        out[:] = vals
        return out.reshape(shape)
    dt = DT_TO_NP.get(proto.dtype)
    if dt is None:
        raise TypeError(f"unsupported tensor dtype {types_pb2.DataType.Name(proto.dtype)}")
    if proto.tensor_content:
        if len(proto.tensor_content) != n * dt.itemsize:
            raise ValueError(f"tensor_content has {len(proto.tensor_content)} bytes, shape {shape} "
                             f"of {dt.name} needs {n * dt.itemsize}")
        return np.frombuffer(proto.tensor_content, dtype=dt.newbyteorder("<")).astype(dt).reshape(shape)
    vals = getattr(proto, _VAL_FIELD[proto.dtype])
    if len(vals) == n:
        return np.array(vals, dtype=dt).reshape(shape)
    return np.array(_fill(list(vals), n, 0), dtype=dt).reshape(shape)
