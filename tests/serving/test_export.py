"""The SavedModel export: layout, signatures, equality with the in-process model, and
proofs that stock TensorFlow (hence TF Serving) can run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from _serving_ref import reference_topk, reference_user, sample_histories


def _plain_env():
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("PYTHONPATH", None)
    return env


def _run_plain(script: str, *args, timeout=120):
    """Run ``script`` in a fresh interpreter that never imports rearec_tf."""
    code = textwrap.dedent(script)
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=_plain_env(),
                          cwd="/", capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported[1]))


def test_layout_and_assets(exported, trained_run):
    base, v1 = exported
    run_dir = trained_run[0]
    assert sorted(os.listdir(base)) == ["1"], "no temporary folder may be left behind"
    for p in ("saved_model.pb", "variables/variables.index", "assets/config.json",
              "assets/vocabulary.json", "assets.extra/tf_serving_warmup_requests",
              "assets.extra/export.json"):
        assert (v1 / p).exists(), p
    assert json.loads((v1 / "assets/config.json").read_text()) == \
        json.loads((run_dir / "config.json").read_text())
    assert json.loads((v1 / "assets/vocabulary.json").read_text()) == \
        json.loads((run_dir / "vocabulary.json").read_text())
    from tensorflow_serving.apis import prediction_log_pb2

    sigs = set()
    for rec in tf.data.TFRecordDataset(str(v1 / "assets.extra/tf_serving_warmup_requests")):
        log = prediction_log_pb2.PredictionLog.FromString(rec.numpy())
        sigs.add(log.predict_log.request.model_spec.signature_name)
        assert "history" in log.predict_log.request.inputs
    assert {"serving_default", "recommend", "user_embedding", "score_items"} <= sigs


def test_signature_defs(loaded):
    names = set(loaded.signatures)
    assert {"serving_default", "recommend", "user_embedding", "score_items",
            "recommend_int", "user_embedding_int", "score_items_int"} <= names
    rec = loaded.signatures["recommend"]
    _, spec = rec.structured_input_signature
    assert spec["history"].dtype == tf.string and spec["history"].shape.as_list() == [None, None]
    assert spec["k"].dtype == tf.int32 and spec["k"].shape.rank == 0
    assert spec["exclude_history"].dtype == tf.bool and spec["steps"].dtype == tf.int32
    out = rec.structured_outputs
    assert out["item_ids"].dtype == tf.string and out["scores"].dtype == tf.float32
    assert out["num_unknown"].dtype == tf.int32
    assert loaded.signatures["recommend_int"].structured_input_signature[1]["history"].dtype == tf.int64


def _call(loaded, sig, **kw):
    conv = {k: tf.constant(v) for k, v in kw.items()}
    return {k: v.numpy() for k, v in loaded.signatures[sig](**conv).items()}


def _pad(histories):
    from serving.client import pad_histories

    return pad_histories(histories)[0].astype(bytes) if histories else np.zeros([0, 0], bytes)


def test_matches_in_process_model(loaded, trained_run):
    _, cfg, split, model = trained_run
    vocab = split.vocab
    rng = np.random.default_rng(1)
    hs = sample_histories(vocab, rng, 12, max_len=45)  # some longer than max_len=20
    hs += [[], ["nope", "never"], split.vocab.ids(split.test.histories[0])]
    for steps, k, exclude in [(2, 10, True), (0, 7, False), (4, 25, True)]:
        ids, scores = reference_topk(model, cfg, vocab, hs, k=k, exclude=exclude, steps=steps)
        out = _call(loaded, "recommend", history=_pad(hs), k=np.int32(k),
                    exclude_history=exclude, steps=np.int32(steps))
        np.testing.assert_allclose(out["scores"], scores, rtol=1e-4, atol=1e-5)
        assert (out["item_ids"].astype(str) == ids.astype(str)).mean() > 0.98  # float ties
        unknown = [sum(1 for x in h if x not in vocab) for h in hs]
        assert out["num_unknown"].tolist() == unknown
        emb = _call(loaded, "user_embedding", history=_pad(hs), steps=np.int32(steps))["embedding"]
        np.testing.assert_allclose(emb, reference_user(model, cfg, vocab, hs, steps), rtol=1e-4, atol=1e-5)
    # the trained K is the default
    default = _call(loaded, "user_embedding", history=_pad(hs[:3]), steps=np.int32(cfg.reason_steps))
    assert "steps" in dict(loaded.signatures["user_embedding"].structured_input_signature[1])
    np.testing.assert_allclose(default["embedding"], reference_user(model, cfg, vocab, hs[:3]),
                               rtol=1e-4, atol=1e-5)


def test_history_handling(loaded, trained_run):
    _, cfg, split, model = trained_run
    items = split.vocab.items
    base = items[:5]
    a = _call(loaded, "recommend", history=_pad([base, ["x"] + base[:2] + ["y", ""] + base[2:]]),
              k=np.int32(10), exclude_history=True, steps=np.int32(2))
    assert a["num_unknown"].tolist() == [0, 2]
    assert (a["item_ids"][0] == a["item_ids"][1]).all(), "unknown ids must be ignored"
    assert not set(a["item_ids"][0].astype(str)) & set(base), "history must be excluded"
    # long history: only the max_len most recent known items matter
    long = items[100:100 + 3 * cfg.max_len]
    e = _call(loaded, "user_embedding", history=_pad([long, long[-cfg.max_len:]]), steps=np.int32(2))
    np.testing.assert_allclose(e["embedding"][0], e["embedding"][1], rtol=1e-5, atol=1e-6)
    # pad row never returned, k capped at the catalogue size
    n = len(items)
    full = _call(loaded, "recommend", history=_pad([[]]), k=np.int32(n + 50),
                 exclude_history=False, steps=np.int32(2))
    assert full["item_ids"].shape == (1, n)
    assert sorted(full["item_ids"][0].astype(str)) == sorted(items)
    # excluding leaves fewer than k items: trailing "" / -inf
    ex = _call(loaded, "recommend", history=_pad([items[:3]]), k=np.int32(n),
               exclude_history=True, steps=np.int32(2))
    assert (ex["item_ids"][0, -3:] == b"").all() and np.isneginf(ex["scores"][0, -3:]).all()
    assert np.isfinite(ex["scores"][0, :-3]).all()


def test_cold_start_is_finite(loaded, trained_run):
    """An empty / all-unknown / zero-length history runs the model on an all-padding
    sequence; it must give finite embeddings (the attention mask is finite)."""
    for hist in (np.zeros([2, 0], bytes), np.array([[b"", b""], [b"zz", b""]])):
        for steps in (0, 2, 4):
            e = _call(loaded, "user_embedding", history=hist, steps=np.int32(steps))["embedding"]
            assert np.isfinite(e).all()
            r = _call(loaded, "recommend", history=hist, k=np.int32(5), exclude_history=True,
                      steps=np.int32(steps))
            assert np.isfinite(r["scores"]).all() and (r["item_ids"] != b"").all()
    _, cfg, split, model = trained_run
    ref = reference_user(model, cfg, split.vocab, [[]])
    assert np.isfinite(ref).all()


def test_score_items_and_int_ids(loaded, trained_run):
    _, cfg, split, model = trained_run
    items = split.vocab.items
    hist = [items[:4], items[10:12]]
    cands = [[items[20], "zzz", items[21]], [items[5], "", items[6]]]
    out = _call(loaded, "score_items", history=_pad(hist), candidates=_pad(cands), steps=np.int32(2))
    user = reference_user(model, cfg, split.vocab, hist)
    E = np.asarray(model.item_embeddings)
    want = np.array([[user[0] @ E[split.vocab.lookup([items[20]])[0]], -np.inf,
                      user[0] @ E[split.vocab.lookup([items[21]])[0]]],
                     [user[1] @ E[split.vocab.lookup([items[5]])[0]], -np.inf,
                      user[1] @ E[split.vocab.lookup([items[6]])[0]]]], np.float32)
    np.testing.assert_allclose(out["scores"], want, rtol=1e-4, atol=1e-5)
    assert out["num_unknown_candidates"].tolist() == [1, 0]
    ih = np.array([[int(x) for x in items[:4]], [-1, -1, int(items[10]), int(items[11])]], np.int64)
    si = _call(loaded, "recommend", history=_pad(hist), k=np.int32(5), exclude_history=True,
               steps=np.int32(2))
    ii = _call(loaded, "recommend_int", history=ih, k=np.int32(5), exclude_history=True,
               steps=np.int32(2))
    assert ii["item_ids"].dtype == np.int64
    assert [[str(x) for x in r] for r in ii["item_ids"]] == si["item_ids"].astype(str).tolist()
    np.testing.assert_allclose(ii["scores"], si["scores"], rtol=1e-6)


def test_invalid_steps_and_k(loaded):
    h = np.array([[b"1"]])
    for steps in (-1, 5):
        with pytest.raises(tf.errors.InvalidArgumentError, match="steps must be in"):
            _call(loaded, "user_embedding", history=h, steps=np.int32(steps))
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be >= 1"):
        _call(loaded, "recommend", history=h, k=np.int32(0), exclude_history=True, steps=np.int32(1))


@pytest.fixture(scope="module")
def plain_process(exported, tmp_path_factory):
    """One fresh interpreter (TF_USE_LEGACY_KERAS unset, rearec_tf never imported) that
    loads the export with tf.saved_model.load, runs ``recommend`` and lists every op of
    the graph and its function library."""
    tmp = tmp_path_factory.mktemp("plain")
    hist = np.array([[b"", b"1", b"2", b"3"], [b"", b"", b"", b""], [b"4", b"x", b"5", b"6"]])
    np.save(tmp / "hist.npy", hist)
    out = _run_plain("""
        import json, os, sys
        import numpy as np
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.python.framework import op_def_registry
        assert "TF_USE_LEGACY_KERAS" not in os.environ
        m = tf.saved_model.load(sys.argv[1])
        h = np.load(sys.argv[2], allow_pickle=True)
        out = m.signatures["recommend"](history=tf.constant(h), k=tf.constant(10),
                                        exclude_history=tf.constant(True), steps=tf.constant(2))
        np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
        project = sorted(k for k in sys.modules
                         if k.startswith(("rearec_tf", "tf_keras", "tensorflow_recommenders")))
        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString(open(os.path.join(sys.argv[1], "saved_model.pb"), "rb").read())
        ops, fnames = set(), set()
        for mg in sm.meta_graphs:
            ops.update(n.op for n in mg.graph_def.node)
            for f in mg.graph_def.library.function:
                fnames.add(f.signature.name)
                ops.update(n.op for n in f.node_def)
        ops -= fnames  # calls of library functions: their bodies are walked above
        print(json.dumps({"project_modules": project, "ops": sorted(ops),
                          "unregistered": sorted(o for o in ops if op_def_registry.get(o) is None)}))
    """, exported[1], tmp / "hist.npy", tmp / "out.npz")
    return hist, np.load(tmp / "out.npz", allow_pickle=True), json.loads(out.strip().splitlines()[-1])


def test_plain_tensorflow_process_gets_identical_topk(plain_process, loaded):
    hist, got, info = plain_process
    assert info["project_modules"] == [], "loading must not need the project code"
    want = _call(loaded, "recommend", history=hist, k=np.int32(10), exclude_history=True,
                 steps=np.int32(2))
    assert (got["item_ids"] == want["item_ids"]).all()
    np.testing.assert_array_equal(got["scores"], want["scores"])


def test_only_stock_ops(plain_process):
    """Every op of the graph and of every library function is registered in a plain TF
    process, and none is a Python op."""
    ops = plain_process[2]["ops"]
    assert plain_process[2]["unregistered"] == []
    assert not [o for o in ops if "PyFunc" in o or "py_func" in o.lower()]
    assert len(ops) > 20 and "LookupTableFindV2" in ops and "TopKV2" in ops


def test_saved_model_cli_run(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli not installed")
    proc = subprocess.run(
        [cli, "run", "--dir", str(exported[1]), "--tag_set", "serve", "--signature_def",
         "serving_default", "--input_exprs",
         "history=[[b'1',b'2',b'3'],[b'',b'',b'nope']];k=4;exclude_history=True;steps=2"],
        env=_plain_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Result for output key item_ids" in out and "Result for output key scores" in out
    assert "Result for output key num_unknown:\n[0 1]" in out


def test_versions_and_cli_errors(exported, trained_run, tmp_path, capsys):
    from rearec_tf import export

    run_dir, cfg, split, model = trained_run
    base = tmp_path / "m"
    os.makedirs(base / ".tmp-7-999999999")  # a dead writer's leftovers are cleaned
    os.makedirs(base / "4")
    p = export.export_model(model, cfg, split.vocab, str(base), warmup=False)
    assert p.endswith("/5") and not (base / ".tmp-7-999999999").exists()
    assert export.main(["--run-dir", str(run_dir), "--export-dir", str(base), "--version", "5"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert export.main(["--run-dir", str(tmp_path / "missing"), "--export-dir", str(base)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(os.listdir(base)) == ["4", "5"]
