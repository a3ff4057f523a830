"""serving.tensors: the fast TensorProto converters agree with TensorFlow's own."""
import numpy as np
import pytest
import tensorflow as tf
from _serving_ref import tensor_proto
from tensorflow.core.framework import types_pb2

from serving.tensors import make_tensor_proto, tensor_proto_to_ndarray

VALUES = [
    np.array([[0.25, -1.5, 3.0]], np.float32),
    np.arange(6, dtype=np.float64).reshape(3, 2) / 7,
    np.array([[1, -1, 2**40]], np.int64),
    np.array([7, -3], np.int32),
    np.array([True, False, True]),
    np.array(5, np.int32),  # scalar (the optional `k`)
    np.zeros((0, 4), np.int64),  # empty batch
    np.array([[b"B0001", b"", "é".encode()]], dtype=object),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{v.dtype}{list(v.shape)}")
def test_round_trip_equals_tensorflow(value):
    ours = make_tensor_proto(value)
    # TensorFlow decodes our proto to the same array, and we decode TensorFlow's proto.
    np.testing.assert_array_equal(tf.make_ndarray(ours), value)
    back = tensor_proto_to_ndarray(tf.make_tensor_proto(value), decode_strings=False)
    assert back.dtype == tf.make_ndarray(ours).dtype and back.shape == value.shape
    np.testing.assert_array_equal(back, value)
    assert ours.dtype == tf.make_tensor_proto(value).dtype


def test_strings_decode_to_str_or_stay_bytes():
    p = make_tensor_proto(np.array([["a", "é"]]))
    assert p.dtype == types_pb2.DT_STRING and list(p.string_val) == [b"a", "é".encode()]
    assert tensor_proto_to_ndarray(p).tolist() == [["a", "é"]]
    assert tensor_proto_to_ndarray(p, decode_strings=False).tolist() == [[b"a", "é".encode()]]


def test_short_value_lists_repeat_the_last_value():
    # TF Serving's Tensor::FromProto rule: fewer values than elements -> last value repeated.
    assert tensor_proto_to_ndarray(tensor_proto(types_pb2.DT_INT64, [2, 2], int64_val=[4])).tolist() == [[4, 4], [4, 4]]
    assert tensor_proto_to_ndarray(tensor_proto(types_pb2.DT_FLOAT, [3], float_val=[1.0, 2.0])).tolist() == [1, 2, 2]
    assert tensor_proto_to_ndarray(tensor_proto(types_pb2.DT_STRING, [3], string_val=[b"x"])).tolist() == ["x"] * 3
    assert tensor_proto_to_ndarray(tensor_proto(types_pb2.DT_INT32, [2])).tolist() == [0, 0]
    # one value filling a tensor is also what TensorFlow's make_ndarray does
    p = tensor_proto(types_pb2.DT_FLOAT, [2, 3], float_val=[0.5])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), tf.make_ndarray(p))


@pytest.mark.parametrize("proto", [
    tensor_proto(types_pb2.DT_INT64, [2], int64_val=[1, 2, 3]),  # too many values
    tensor_proto(types_pb2.DT_STRING, [1], string_val=[b"a", b"b"]),
    tensor_proto(types_pb2.DT_FLOAT, [2], tensor_content=b"\x00" * 12),  # 3 floats for shape [2]
    tensor_proto(types_pb2.DT_INT64, [-1], int64_val=[1]),
], ids=["values", "strings", "content", "negative-dim"])
def test_malformed_tensors_raise_value_error(proto):
    with pytest.raises(ValueError):
        tensor_proto_to_ndarray(proto)


def test_unsupported_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="unsupported"):
        make_tensor_proto(np.array([1], np.float16))
    with pytest.raises(TypeError, match="DT_HALF"):
        tensor_proto_to_ndarray(tf.make_tensor_proto(np.array([1], np.float16)))


def test_big_endian_input_is_sent_little_endian():
    value = np.array([1, 258], dtype=">i8")
    p = make_tensor_proto(value)
    assert p.dtype == types_pb2.DT_INT64
    np.testing.assert_array_equal(tf.make_ndarray(p), [1, 258])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), [1, 258])
