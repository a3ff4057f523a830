"""End to end over gRPC/REST against ``python -m serving.server`` subprocesses on
127.0.0.1: equality with the in-process model, bad requests under load, a new version
picked up under load, an interrupted export never served."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2

from _serving_ref import (REPO_ROOT, ServerProcess, free_port, reference_topk, reference_user,
                          tensor_proto)
from serving.client import RecommendationError, RecommenderClient
from serving.rest_client import RestRecommenderClient


@pytest.fixture(scope="module")
def client(server):
    with RecommenderClient(server.address, timeout=20.0) as c:
        yield c


def _hist(split, n=6):
    items = split.vocab.items
    hs = [split.vocab.ids(h)[-30:] for h in split.test.histories[:n]]
    return hs + [[], ["unknown-id", items[3]], items[50:50 + 45]]


def test_every_signature_matches_in_process(client, server, trained_run):
    _, cfg, split, model = trained_run
    vocab = split.vocab
    hs = _hist(split)
    for steps in (None, 0, 3):
        out = client.recommend(hs, k=10, steps=steps)
        ids, scores = reference_topk(model, cfg, vocab, hs, k=10, exclude=True, steps=steps)
        assert out["model_version"] == 1
        assert out["item_ids"].shape == (len(hs), 10)
        assert (out["item_ids"].astype(str) == ids.astype(str)).mean() > 0.98
        np.testing.assert_allclose(out["scores"], scores, rtol=1e-4, atol=1e-5)
        assert out["num_unknown"].tolist() == [0] * 7 + [1, 0]
        emb = client.embed(hs, steps=steps)["embedding"]
        np.testing.assert_allclose(emb, reference_user(model, cfg, vocab, hs, steps), rtol=1e-4, atol=1e-5)
    # a batch of only empty histories (zero-length tensor): the cold-start answer
    cold = client.recommend([[], []], k=4)
    ref_ids, _ = reference_topk(model, cfg, vocab, [[], []], k=4)
    assert cold["item_ids"].astype(str).tolist() == ref_ids.astype(str).tolist()
    assert cold["num_unknown"].tolist() == [0, 0]
    # serving_default = recommend; keep the history in
    d = client.recommend(hs[:2], k=5, exclude_history=False, signature="serving_default")
    ids, scores = reference_topk(model, cfg, vocab, hs[:2], k=5, exclude=False)
    assert d["item_ids"].astype(str).tolist() == ids.astype(str).tolist()
    # integer ids
    ih = [[int(x) for x in h] for h in hs[:3] if h]
    oi = client.recommend(ih, k=5)
    os_ = client.recommend([[str(x) for x in h] for h in ih], k=5)
    assert oi["item_ids"].dtype == np.int64
    assert oi["item_ids"].astype(str).tolist() == os_["item_ids"].astype(str).tolist()
    # score_items
    cands = [[vocab.items[7], "nope", vocab.items[8]]] * 2
    sc = client.score(hs[:2], cands)
    user = reference_user(model, cfg, vocab, hs[:2])
    E = np.asarray(model.item_embeddings)
    want = user @ E[vocab.lookup([vocab.items[7], vocab.items[8]])].T
    np.testing.assert_allclose(sc["scores"][:, [0, 2]], want, rtol=1e-4, atol=1e-5)
    assert np.isneginf(sc["scores"][:, 1]).all() and sc["num_unknown_candidates"].tolist() == [1, 1]
    # metadata and status
    meta = client.metadata()
    assert meta["version"] == 1
    rec = meta["signatures"]["recommend"]
    assert rec["inputs"]["history"] == {"dtype": "string", "shape": [None, None]}
    assert rec["inputs"]["k"] == {"dtype": "int32", "shape": []}
    assert set(rec["defaults"]) == {"k", "exclude_history", "steps"}
    assert rec["outputs"]["scores"] == {"dtype": "float", "shape": [None, None]}
    assert meta["signatures"]["user_embedding"]["outputs"]["embedding"]["shape"] == [None, cfg.hidden_size]
    assert client.status() == [{"version": 1, "state": "AVAILABLE", "error_code": 0}]


def test_pad_to_sends_one_shape_and_the_same_answers(client, server, trained_run):
    """``pad_to`` widens every request to one shape (batchable across users) without
    changing any answer; a longer history is sent whole, never truncated."""
    from serving.client import pad_histories

    _, cfg, split, _ = trained_run
    hs = _hist(split)
    width = max(len(h) for h in hs)
    arr, _ = pad_histories(hs, width + 7)
    assert arr.shape == (len(hs), width + 7) and (arr[:, :7] == "").all()
    assert pad_histories(hs, 3)[0].shape == (len(hs), width)  # never truncated
    ints, _ = pad_histories(np.array([[4, 5]]), 4)
    assert ints.tolist() == [[-1, -1, 4, 5]]
    with RecommenderClient(server.address, timeout=20.0, pad_to=cfg.max_len + 5) as padded:
        for h in ([hs[0]], hs[:3], [[]]):
            a, b = padded.recommend(h, k=8), client.recommend(h, k=8)
            assert a["item_ids"].astype(str).tolist() == b["item_ids"].astype(str).tolist()
            np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-6)
        np.testing.assert_allclose(padded.embed(hs[:3], steps=2)["embedding"],
                                   client.embed(hs[:3], steps=2)["embedding"], rtol=1e-6)
    rest = RestRecommenderClient(server.rest_url, timeout=20.0, pad_to=cfg.max_len)
    assert rest.recommend(hs[:2], k=8)["item_ids"].astype(str).tolist() == \
        client.recommend(hs[:2], k=8)["item_ids"].astype(str).tolist()
    with pytest.raises(ValueError, match="pad_to"):
        RecommenderClient(server.address, pad_to=-1)


def test_rest_client_matches_grpc(client, server, trained_run):
    _, cfg, split, _ = trained_run
    rest = RestRecommenderClient(server.rest_url, timeout=20.0)
    hs = _hist(split, 3)
    a, b = rest.recommend(hs, k=7), client.recommend(hs, k=7)
    assert a["item_ids"].astype(str).tolist() == b["item_ids"].astype(str).tolist()
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-6)
    np.testing.assert_allclose(rest.embed(hs)["embedding"], client.embed(hs)["embedding"], rtol=1e-6)
    s = rest.score(hs[:1], [["nope", split.vocab.items[0]]])
    assert np.isneginf(s["scores"][0, 0]) and np.isfinite(s["scores"][0, 1])
    assert rest.status() == [{"version": 1, "state": "AVAILABLE"}]
    assert "recommend" in rest.metadata()["metadata"]["signature_def"]["signatureDef"]
    with pytest.raises(RecommendationError) as e:
        rest.embed(hs, steps=99)
    assert e.value.code == "INVALID_ARGUMENT" and "steps must be in" in e.value.details
    with pytest.raises(RecommendationError) as e:
        RestRecommenderClient(server.rest_url, model="other").recommend(hs)
    assert e.value.code == "NOT_FOUND"


class Load:
    """``threads`` threads sending good requests until stopped (bounded count and time)."""

    def __init__(self, address, histories, threads=8, max_requests=400, max_seconds=60.0):
        self.address, self.histories = address, histories
        self.errors, self.versions, self.count = [], [], 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._deadline = time.time() + max_seconds
        self._budget = max_requests
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, i):
        with RecommenderClient(self.address, timeout=30.0, retries=0) as c:
            j = 0
            while not self._stop.is_set() and time.time() < self._deadline:
                with self._lock:
                    if self.count >= self._budget:
                        return
                    self.count += 1
                h = self.histories[(i + j) % len(self.histories)]
                j += 1
                try:
                    out = c.recommend([h, h[::-1]], k=5) if j % 2 else c.embed([h])
                    with self._lock:
                        self.versions.append(out["model_version"])
                except Exception as e:  # noqa: BLE001
                    with self._lock:
                        self.errors.append(repr(e))

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(60)


def _raw_predict(client, signature, **inputs):
    return client.predict(signature, inputs)


def test_bad_requests_while_serving(client, server, trained_run):
    split = trained_run[2]
    hs = _hist(split)
    load = Load(server.address, hs, max_requests=240)
    h = np.array([["1", "2"]], dtype=object)
    bad = [
        ("NOT_FOUND", lambda: RecommenderClient(server.address, model="nope", retries=0).recommend(hs)),
        ("NOT_FOUND", lambda: RecommenderClient(server.address, version=42, retries=0).recommend(hs)),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "no_such_signature", history=h)),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", k=np.int32(3))),  # no history
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, bogus=np.int32(1))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=np.array([[1, 2]]))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=np.array(["1", "2"], object))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, k=np.int32([3, 4]))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, k=np.float32(3))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, k=np.int32(5000))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, k=np.int32(0))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, steps=np.int32(-1))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, steps=np.int32(9))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend",
                                                  history=np.full((1025, 1), "1", object))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend",
                                                  history=np.full((1, 10_001), "", object))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "score_items", history=h,
                                                  candidates=np.array([["1"], ["2"]], object))),
        # malformed tensors: more string values than the shape holds; 3 bytes for an int32
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=tensor_proto(
            types_pb2.DT_STRING, [1, 2], string_val=[b"1", b"2", b"3"]))),
        ("INVALID_ARGUMENT", lambda: _raw_predict(client, "recommend", history=h, k=tensor_proto(
            types_pb2.DT_INT32, [], tensor_content=b"abc"))),
        ("UNIMPLEMENTED", lambda: _classify(client)),
    ]
    try:
        for want, call in bad:
            with pytest.raises(RecommendationError) as e:
                call()
            assert e.value.code == want, (want, str(e.value))
            assert e.value.details
        # a good request right after the bad ones
        assert client.recommend(hs[:1], k=3)["item_ids"].shape == (1, 3)
    finally:
        load.stop()
    assert not load.errors, load.errors[:3]
    assert load.count > 0


def _classify(client):
    from tensorflow_serving.apis import classification_pb2

    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "rearec"
    return client._call(client._predict.Classify, req, "Classify")


def test_unavailable_is_retried_then_reported():
    port = free_port()
    with RecommenderClient(f"127.0.0.1:{port}", timeout=1.0, retries=2, backoff=0.05) as c:
        with pytest.raises(RecommendationError) as e:
            c.status()
    assert e.value.code == "UNAVAILABLE" and e.value.attempts == 3


def test_new_version_under_load_and_interrupted_export(tmp_path, exported, trained_run):
    """A version exported while 8 threads query (with --enable_batching) is picked up with
    zero failed requests; a killed export (.tmp-* left behind) is never served; SIGTERM
    exits 0."""
    from rearec_tf import export

    run_dir, cfg, split, model = trained_run
    base = tmp_path / "rearec"
    base.mkdir()
    shutil.copytree(exported[1], base / "1")
    # leftovers that must be ignored: a partial temp export and a non-version folder
    (base / ".tmp-9-1").mkdir()
    (base / ".tmp-9-1" / "saved_model.pb").write_bytes(b"garbage")
    (base / "notaversion").mkdir()
    srv = ServerProcess(base, "--enable_batching", poll=0.3)
    try:
        hs = _hist(split)
        load = Load(srv.address, hs, max_requests=100_000, max_seconds=90)
        try:
            time.sleep(1.0)
            export.export_model(model, cfg, split.vocab, str(base), warmup=True)  # -> version 2
            deadline = time.time() + 60
            while time.time() < deadline and 2 not in load.versions[-20:]:
                time.sleep(0.2)
            n_before = len(load.versions)
            time.sleep(1.0)
        finally:
            load.stop()
        assert not load.errors, load.errors[:3]
        assert 1 in load.versions and 2 in load.versions
        # Each of the load's threads may have had one request in flight on version 1 when
        # version 2 was first seen; every response after those is version 2.
        in_flight = len(load._threads)
        assert set(load.versions[n_before + in_flight:]) == {2}, \
            "all requests sent after the swap use version 2"
        with RecommenderClient(srv.address) as c:
            assert [s["version"] for s in c.status()] == [2, 1]
            # batching gives the same answers as the in-process model
            ids, scores = reference_topk(model, cfg, split.vocab, hs, k=5)
            out = c.recommend(hs, k=5)
            np.testing.assert_allclose(out["scores"], scores, rtol=1e-4, atol=1e-5)

            # an export killed between writing and renaming is never served
            env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
            proc = subprocess.Popen([sys.executable, "-m", "rearec_tf.export", "--run-dir", str(run_dir),
                                     "--export-dir", str(base), "--version", "3"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 90
            while time.time() < deadline and proc.poll() is None:
                if any(d.startswith(".tmp-3-") for d in os.listdir(base)):
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)  # mid-write (or, rarely, just after the rename)
            proc.wait(30)
            time.sleep(1.0)  # > 3 polls
            versions = [s["version"] for s in c.status()]
            if (base / "3").exists():  # the rename happened: then the version is complete
                assert (base / "3" / "assets.extra" / "export.json").exists()
                assert (base / "3" / "saved_model.pb").exists()
            else:
                assert any(d.startswith(".tmp-3-") for d in os.listdir(base))
                assert versions == [2, 1]
            assert c.recommend(hs[:1], k=3)["model_version"] in (2, 3)
        assert "failed to load" not in srv.output()
    finally:
        code = srv.stop()
    assert code == 0
