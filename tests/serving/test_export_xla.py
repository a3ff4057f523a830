"""``export --xla``: the XLA-compiled encoder gives the default export's answers at every
batch size, compiles only at power-of-two batch sizes that the warm-up covers, and stays
loadable by plain TensorFlow and servable over gRPC with request batching."""
from __future__ import annotations

import json

import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from _serving_ref import ServerProcess, sample_histories


@pytest.fixture(scope="module")
def models(exported, exported_xla):
    return tf.saved_model.load(str(exported[1])), tf.saved_model.load(str(exported_xla[1]))


def _call(m, sig, **kw):
    return {k: v.numpy() for k, v in m.signatures[sig](**{k: tf.constant(v) for k, v in kw.items()}).items()}


def _histories(trained_run, n, seed=0):
    from serving.client import pad_histories

    _, _, split, _ = trained_run
    hs = sample_histories(split.vocab, np.random.default_rng(seed), n)
    return pad_histories(hs)[0].astype(bytes)


@pytest.mark.parametrize("batch", [1, 3, 8, 13])
@pytest.mark.parametrize("steps", [0, 2, 3])
def test_same_answers_as_the_default_export(models, trained_run, batch, steps):
    plain, xla = models
    h = _histories(trained_run, batch, seed=batch)
    assert h.shape[0] == batch
    st = np.int32(steps)
    a = _call(plain, "recommend", history=h, k=np.int32(10), exclude_history=True, steps=st)
    b = _call(xla, "recommend", history=h, k=np.int32(10), exclude_history=True, steps=st)
    assert b["item_ids"].shape == (batch, 10)
    assert (a["item_ids"] == b["item_ids"]).all()
    np.testing.assert_allclose(b["scores"], a["scores"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(b["num_unknown"], a["num_unknown"])
    ea = _call(plain, "user_embedding", history=h, steps=st)["embedding"]
    eb = _call(xla, "user_embedding", history=h, steps=st)["embedding"]
    np.testing.assert_allclose(eb, ea, rtol=1e-5, atol=1e-5)
    cand = h[:, -4:]
    sa = _call(plain, "score_items", history=h, candidates=cand, steps=st)["scores"]
    sb = _call(xla, "score_items", history=h, candidates=cand, steps=st)["scores"]
    np.testing.assert_allclose(sb, sa, rtol=1e-5, atol=1e-5)


def test_invalid_steps_still_rejected(models):
    _, xla = models
    with pytest.raises(tf.errors.InvalidArgumentError, match="steps must be in"):
        _call(xla, "user_embedding", history=np.array([[b"1"]]), steps=np.int32(99))


def test_export_info_and_power_of_two_warmup(exported_xla):
    from tensorflow_serving.apis import prediction_log_pb2

    v1 = exported_xla[1]
    assert json.loads((v1 / "assets.extra/export.json").read_text())["xla"] is True
    sizes = set()
    for rec in tf.data.TFRecordDataset(str(v1 / "assets.extra/tf_serving_warmup_requests")):
        req = prediction_log_pb2.PredictionLog.FromString(rec.numpy()).predict_log.request
        if req.model_spec.signature_name == "recommend":
            sizes.add(req.inputs["history"].tensor_shape.dim[0].size)
    assert {1, 2, 4, 8, 16, 32, 64, 128, 256} <= sizes


def test_one_xla_cluster_in_the_graph(exported_xla, exported):
    """The encoder function carries ``_XlaMustCompile``; the default export has none."""
    from tensorflow.core.protobuf import saved_model_pb2

    def must_compile(path):
        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
        lib = sm.meta_graphs[0].graph_def.library.function
        return [f.signature.name for f in lib
                if f.attr.get("_XlaMustCompile") is not None and f.attr["_XlaMustCompile"].b]

    assert must_compile(exported_xla[1]), "no jit_compile function in the --xla export"
    assert must_compile(exported[1]) == []


def test_served_with_batching_over_grpc(exported_xla, models, trained_run, tmp_path):
    """Concurrent gRPC requests merged by the batcher, each batch padded to an allowed batch
    size by a TF Serving batching parameters file (how an XLA export keeps to a few
    compiled shapes), equal the default export run in process."""
    from concurrent.futures import ThreadPoolExecutor

    from serving.client import RecommenderClient

    plain, _ = models
    items = trained_run[2].vocab.items
    rng = np.random.default_rng(7)
    hs = [[items[i] for i in rng.integers(0, len(items), size=10)] for _ in range(24)]
    params = tmp_path / "batching_parameters.txt"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 20000 }\n"
                      "num_batch_threads { value: 1 }\nallowed_batch_sizes: 4\n"
                      "allowed_batch_sizes: 8\n")
    srv = ServerProcess(exported_xla[0], "--enable_batching", "--batching_parameters_file", str(params))
    try:
        def ask(h):
            with RecommenderClient(srv.address, timeout=60) as c:
                return c.recommend([h], k=5)

        with ThreadPoolExecutor(8) as ex:
            got = list(ex.map(ask, hs))
    finally:
        assert srv.stop() == 0
    from serving.client import pad_histories

    for h, g in zip(hs, got):
        want = _call(plain, "recommend", history=pad_histories([h])[0].astype(bytes), k=np.int32(5),
                     exclude_history=True, steps=np.int32(trained_run[1].train_steps))
        got_ids = [x.decode() if isinstance(x, bytes) else str(x)
                   for x in np.asarray(g["item_ids"]).reshape(-1)]
        assert got_ids == [x.decode() for x in want["item_ids"][0]]
        np.testing.assert_allclose(np.asarray(g["scores"]).reshape(-1), want["scores"][0], rtol=1e-5, atol=1e-5)


def test_saved_model_cli_runs_the_xla_export(exported_xla):
    """The command-line loader TF Serving's docs use runs the XLA cluster too."""
    import os
    import subprocess
    import sys

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    proc = subprocess.run(
        [cli, "run", "--dir", str(exported_xla[1]), "--tag_set", "serve", "--signature_def",
         "recommend", "--input_exprs",
         "history=[[b'1',b'2',b'3'],[b'',b'',b'nope'],[b'4',b'5',b'6']];k=4;exclude_history=True;steps=2"],
        env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Result for output key num_unknown:\n[0 1 0]" in proc.stdout
