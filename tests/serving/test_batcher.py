"""serving.server.Batcher: which concurrent requests it merges, and that each caller gets
its own rows back."""
from __future__ import annotations

import pathlib
import threading
import time
import types

import numpy as np
import pytest
from tensorflow.core.protobuf import meta_graph_pb2

from serving import server


def _servable():
    sd = meta_graph_pb2.SignatureDef()
    shape = sd.inputs["x"].tensor_shape
    shape.dim.add(size=-1)
    shape.dim.add(size=1)
    return types.SimpleNamespace(version=1, signature_defs={"s": sd},
                                 specs={"s": {"x": server.InputSpec.of(sd.inputs["x"])}})


def _wait(cond, seconds=10.0):
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def _gated_model(monkeypatch):
    """A fake model (y = 10 x) recording each batch's x; its first call waits for the gate."""
    batches, gate = [], threading.Event()

    def fake_run(servable, sig, arrays):
        batches.append(arrays["x"][:, 0].tolist())
        if len(batches) == 1:
            assert gate.wait(10)
        return {"y": arrays["x"] * 10}

    monkeypatch.setattr(server, "run_signature", fake_run)
    return batches, gate


def _behind_a_running_batch(b, batches, gate, queued, before_release=None):
    """Request 1 (x = [[1]]) runs first and is held at the model's gate while the requests
    ``queued`` (x = [[v]] each) queue behind it; ``before_release(servable)`` runs, then the
    gate opens. Returns each request's y column by v."""
    s, results = _servable(), {}

    def call(v):
        results[v] = b.submit(s, "s", {"x": np.array([[v]], np.int64)})["y"][:, 0].tolist()

    threads = [threading.Thread(target=call, args=(1,))]
    threads[0].start()
    _wait(lambda: len(batches) == 1)  # the worker is busy with request 1
    for v in queued:
        threads.append(threading.Thread(target=call, args=(v,)))
        threads[-1].start()
    _wait(lambda: b._q.qsize() == len(queued))
    if before_release is not None:
        before_release(s)
    gate.set()
    for t in threads:
        t.join(10)
    return results


def test_zero_timeout_merges_what_queued_while_the_model_ran(monkeypatch):
    batches, gate = _gated_model(monkeypatch)
    b = server.Batcher(max_rows=3, timeout_s=0.0, workers=1)
    try:
        results = _behind_a_running_batch(b, batches, gate, (2, 3, 4, 5))
    finally:
        b.stop()
    # no waiting (timeout 0), yet the four queued requests were merged, max_rows at a time
    assert [len(x) for x in batches] == [1, 3, 1]
    assert sorted(v for x in batches for v in x) == [1, 2, 3, 4, 5]
    assert results == {v: [10 * v] for v in (1, 2, 3, 4, 5)}
    # the statistics the server logs at shutdown count the same batches
    assert b.stats.sizes == {1: 2, 3: 1}
    assert len(b.stats.waits_ms) == 5
    summary = b.stats.summary()
    assert "3 batches of 5 requests (1.67 per batch; requests per batch: batches = 1: 2, 3: 1)" in summary
    # requests 2..5 queued while request 1 held the worker behind the gate
    assert sorted(b.stats.waits_ms)[-1] > 0


def test_batch_stats_summary_without_batches():
    assert server.BatchStats().summary() == "no batches"


def test_requests_of_different_shapes_are_not_merged(monkeypatch):
    batches = []

    def fake_run(servable, sig, arrays):
        batches.append(arrays["x"].shape)
        return {"y": arrays["x"]}

    monkeypatch.setattr(server, "run_signature", fake_run)
    b = server.Batcher(max_rows=8, timeout_s=1.0, workers=1)
    s = _servable()
    out = {}

    def call(n):
        out[n] = b.submit(s, "s", {"x": np.full((1, n), n, np.int64)})["y"]

    try:
        threads = [threading.Thread(target=call, args=(n,)) for n in (1, 2, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        b.stop()
    assert sorted(batches) == [(1, 2), (2, 1)]
    assert out[1].tolist() == [[1]] and out[2].tolist() == [[2, 2]]


def test_the_timeout_counts_from_arrival_not_from_dequeue(monkeypatch):
    """TF Serving's rule: requests that already waited ``timeout`` in the queue (here while
    the previous batch ran) are run as soon as the worker is free, not after another
    ``timeout``."""
    batches, started, gate = [], [], threading.Event()

    def fake_run(servable, sig, arrays):
        batches.append(arrays["x"][:, 0].tolist())
        started.append(time.monotonic())
        if len(batches) == 1:
            assert gate.wait(10)
        return {"y": arrays["x"]}

    monkeypatch.setattr(server, "run_signature", fake_run)
    b = server.Batcher(max_rows=8, timeout_s=2.0, workers=1)
    s = _servable()

    def call(v):
        b.submit(s, "s", {"x": np.array([[v]], np.int64)})

    try:
        threads = [threading.Thread(target=call, args=(v,)) for v in (1, 2, 3)]
        threads[0].start()
        _wait(lambda: batches == [[1]])  # request 1 waited its 2 s, now it runs (blocked)
        for t in threads[1:]:
            t.start()
        _wait(lambda: b._q.qsize() == 2)
        time.sleep(2.1)  # requests 2 and 3 are now past their deadline
        opened = time.monotonic()
        gate.set()
        for t in threads:
            t.join(10)
    finally:
        b.stop()
    assert batches == [[1], [2, 3]]
    # counted from dequeue, the second batch would start 2 s after the gate opened
    assert started[1] - opened < 1.0


def test_adaptive_batching_does_not_hold_a_lone_request_for_the_timeout(monkeypatch):
    monkeypatch.setattr(server, "run_signature", lambda servable, sig, arrays: {"y": arrays["x"]})
    b = server.Batcher(max_rows=256, timeout_s=3.0, workers=1, adaptive=True)
    try:
        t0 = time.monotonic()
        for v in (1, 2, 3):  # one client, back to back: each alone in its batch
            assert b.submit(_servable(), "s", {"x": np.array([[v]], np.int64)})["y"].tolist() == [[v]]
        assert time.monotonic() - t0 < 1.5  # not 3 x 3 s
    finally:
        b.stop()
    assert b.stats.sizes == {1: 3}


def test_adaptive_batching_waits_for_the_clients_in_flight_then_closes(monkeypatch):
    """Four clients: 1 runs alone behind a gate while 2, 3, 4 queue; when 1's client comes
    back (request 5), the batch holds as many requests as were in flight (4) and closes
    at once, long before the 3 s timeout, instead of running 2, 3, 4 without it."""
    batches, gate = _gated_model(monkeypatch)
    b = server.Batcher(max_rows=256, timeout_s=3.0, workers=1, adaptive=True)
    s, results = _servable(), {}

    def call(*values):
        for v in values:  # one client: its requests back to back
            results[v] = b.submit(s, "s", {"x": np.array([[v]], np.int64)})["y"][:, 0].tolist()

    try:
        threads = [threading.Thread(target=call, args=(1, 5))]
        threads[0].start()
        _wait(lambda: batches == [[1]])
        for v in (2, 3, 4):
            threads.append(threading.Thread(target=call, args=(v,)))
            threads[-1].start()
        _wait(lambda: b._q.qsize() == 3)
        t0 = time.monotonic()
        gate.set()
        for t in threads:
            t.join(10)
        elapsed = time.monotonic() - t0
    finally:
        b.stop()
    assert [sorted(x) for x in batches] == [[1], [2, 3, 4, 5]]
    assert elapsed < 1.5  # closed by the count, not by the 3 s timeout
    assert results == {v: [10 * v] for v in (1, 2, 3, 4, 5)}


def test_allowed_batch_sizes_pad_each_batch_with_copies_of_its_first_row(monkeypatch):
    batches, gate = _gated_model(monkeypatch)
    b = server.Batcher(max_rows=8, timeout_s=0.0, workers=1, allowed_batch_sizes=[4, 8])
    try:
        results = _behind_a_running_batch(b, batches, gate, (2, 3, 4))
    finally:
        b.stop()
    # request 1 alone was padded to 4 rows, requests 2-4 to 4 rows too
    assert batches == [[1, 1, 1, 1], [2, 3, 4, 2]]  # the model only ever sees allowed sizes
    assert results == {v: [10 * v] for v in (1, 2, 3, 4)}  # padding rows' outputs dropped
    assert [b.padded_rows(n) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]


def test_allowed_batch_sizes_must_end_at_the_batch_limit():
    with pytest.raises(ValueError, match="end at max_batch_size"):
        server.Batcher(max_rows=8, allowed_batch_sizes=[4, 6], workers=0)
    with pytest.raises(ValueError, match="increase strictly"):
        server.Batcher(max_rows=8, allowed_batch_sizes=[8, 4, 8], workers=0)


def test_a_full_queue_refuses_with_unavailable_and_recovers(monkeypatch):
    batches, gate = _gated_model(monkeypatch)
    b = server.Batcher(max_rows=2, timeout_s=0.0, workers=1, max_enqueued_rows=2)

    def refused(s):  # request 1 runs (no longer waiting); 2 and 3 fill the queue
        with pytest.raises(server.ServingError, match="queue is full") as e:
            b.submit(s, "s", {"x": np.array([[4]], np.int64)})
        assert e.value.code == server.grpc.StatusCode.UNAVAILABLE

    try:
        results = _behind_a_running_batch(b, batches, gate, (2, 3), refused)
        assert b.submit(_servable(), "s", {"x": np.array([[5]], np.int64)})["y"].tolist() == [[50]]
    finally:
        b.stop()
    assert results == {v: [10 * v] for v in (1, 2, 3)}


def test_the_repo_batching_parameters_file_is_read_as_tf_serving_reads_it():
    path = pathlib.Path(server.__file__).parent / "batching_parameters.txt"
    assert server.read_batching_parameters(str(path)) == {
        "max_batch_size": 256, "batch_timeout_micros": 2000, "max_enqueued_batches": 256,
        "num_batch_threads": 2, "allowed_batch_sizes": [8, 32, 128, 256],
        "pad_variable_length_inputs": False}


@pytest.mark.parametrize("text, message", [
    ("max_batch_size: 8", "write max_batch_size as `max_batch_size { value: N }`"),
    ("allowed_batch_sizes { value: 8 }", "write allowed_batch_sizes as `allowed_batch_sizes: V`"),
    ('thread_pool_name: "x"', "field 'thread_pool_name' is not applied by this server"),
    ("max_batch_size { value: 8 }\nmax_batch_size { value: 9 }", "max_batch_size is given twice"),
    ("num_batch_threads { value: two }", "num_batch_threads must be an integer, got 'two'"),
    ("num_batch_threads { value: 0 }", "num_batch_threads must be >= 1, got 0"),
    ("max_batch_size { value: 8 } }", "cannot parse '}'"),
    ("pad_variable_length_inputs: yes", "must be true or false"),
])
def test_batching_parameters_errors_name_the_file_and_the_fix(tmp_path, text, message):
    f = tmp_path / "batching.txt"
    f.write_text("# comment\n" + text + "\n")
    with pytest.raises(ValueError) as e:
        server.read_batching_parameters(str(f))
    assert str(f) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("flags, text, message", [
    ([], "max_batch_size { value: 8 }", "needs --enable_batching"),
    (["--enable_batching"], "max_batch_size { value: 8 }\nallowed_batch_sizes: 4",
     "allowed_batch_sizes [4] must increase strictly, start at >= 1 and end at max_batch_size (8)"),
    (["--enable_batching"], "pad_variable_length_inputs: true", "pad_to"),
    (["--enable_batching"], None, "cannot read it"),
])
def test_server_cli_refuses_a_bad_batching_parameters_file(tmp_path, capsys, flags, text, message):
    f = tmp_path / "batching.txt"
    if text is not None:
        f.write_text(text)
    with pytest.raises(SystemExit) as e:
        server.main(["--model_base_path", str(tmp_path), "--batching_parameters_file", str(f)] + flags)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
