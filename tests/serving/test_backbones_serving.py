"""Every backbone exports through the same serving path and answers over gRPC.

One tiny ERL model per non-SASRec backbone (BERT4Rec, GRU4Rec, the feature backbone on
a generated ``.npy`` feature file) is exported as its own version of one base path; a
``python -m serving.server`` subprocess loads them all and each version's top-k and user
embedding must equal the in-process model's.
"""
from __future__ import annotations

import numpy as np
import pytest

from _serving_ref import ServerProcess, reference_topk, reference_user
from conftest import make_run
from serving.client import RecommenderClient

BACKBONES = ("sasrec_preln", "bert4rec", "gru4rec", "feature")


@pytest.fixture(scope="module")
def exported_backbones(tmp_path_factory, lastfm_slice):
    from rearec_tf import export

    root = tmp_path_factory.mktemp("backbones")
    # frozen item vectors keyed by the LastFM slice's integer item ids (row r = id r)
    ids = {int(x) for line in open(lastfm_slice) for x in line.split()[1:]}
    feats = root / "item_vectors.npy"
    np.save(feats, np.random.default_rng(0).normal(size=(max(ids) + 1, 12)).astype(np.float32))
    base = root / "models" / "rearec"
    runs = {}
    for version, backbone in enumerate(BACKBONES, start=1):
        extra = {"item_features": str(feats), "feature_adapter": "moe"} \
            if backbone == "feature" else {}
        run_dir = root / backbone
        cfg, split, model = make_run(run_dir, lastfm_slice, method="erl", backbone=backbone,
                                     **extra)
        assert export.main(["--run-dir", str(run_dir), "--export-dir", str(base),
                            "--version", str(version)]) == 0
        runs[version] = (backbone, cfg, split, model)
    return base, runs


def test_each_backbone_answers_over_grpc_like_in_process(exported_backbones):
    base, runs = exported_backbones
    srv = ServerProcess(base, "--num_versions", str(len(runs)))
    try:
        for version, (backbone, cfg, split, model) in runs.items():
            vocab = split.vocab
            hs = [vocab.ids(h)[-20:] for h in split.test.histories[:5]] + [[]]
            with RecommenderClient(srv.address, timeout=20.0, version=version) as client:
                for steps in (None, 0, 3):
                    out = client.recommend(hs, k=10, steps=steps)
                    ids, scores = reference_topk(model, cfg, vocab, hs, k=10, steps=steps)
                    assert out["model_version"] == version, backbone
                    assert (out["item_ids"].astype(str) == ids.astype(str)).mean() > 0.98, backbone
                    np.testing.assert_allclose(out["scores"], scores, rtol=1e-4, atol=1e-5,
                                               err_msg=backbone)
                emb = client.embed(hs)["embedding"]
                np.testing.assert_allclose(emb, reference_user(model, cfg, vocab, hs, None),
                                           rtol=1e-4, atol=1e-5, err_msg=backbone)
    finally:
        assert srv.stop() == 0
