"""``sasrec_preln``: the SASRec reference code's block, checked against a numpy
transcription of it (√d item embeddings, queries from LayerNorm(h) and keys/values from
h, residuals from the normalised input, ReLU FFN, final LayerNorm), with padding keys
masked out."""
import numpy as np
import pytest

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.sasrec_preln import PreLNSASRecBackbone
from rearec_tf.config import Config

from _backbones import D, batch, make


def _ln(x, norm):
    g, b = norm.gamma.numpy(), norm.beta.numpy()
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + norm.epsilon) * g + b


def _dense(x, layer):
    return x @ layer.kernel.numpy() + layer.bias.numpy()


def _reference(bb, ids):
    valid = ids > 0
    pos = np.maximum(np.cumsum(valid, axis=1) - 1, 0)
    x = bb.item_embedding.numpy()[ids] * np.sqrt(D) + bb.position_embedding.numpy()[pos]
    T = ids.shape[1]
    allowed = np.tril(np.ones((T, T), bool))[None] & valid[:, None, :]
    for layer in bb.encoder_layers:
        att = layer.attention
        q_in = _ln(x, layer.attention_norm)
        heads, dh = att.num_heads, D // att.num_heads

        def split(t):
            return t.reshape(t.shape[0], T, heads, dh)
        q, k, v = (split(_dense(q_in, att.query_dense)), split(_dense(x, att.key_dense)),
                   split(_dense(x, att.value_dense)))
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(dh)
        s = np.where(allowed[:, None], s, -np.inf)
        s = s - np.where(np.isfinite(s), s, -1e30).max(-1, keepdims=True)
        p = np.exp(s)
        p = np.where(p.sum(-1, keepdims=True) > 0, p / np.maximum(p.sum(-1, keepdims=True), 1e-30), 0)
        ctx = np.einsum("bhqk,bkhd->bqhd", p, v).reshape(x.shape)
        a = q_in + _dense(ctx, att.output_dense)
        f = _ln(a, layer.ffn_norm)
        x = f + _dense(np.maximum(_dense(f, layer.ffn_inner), 0), layer.ffn_outer)
    return _ln(x, bb.final_norm), valid


def test_matches_the_reference_block_layout():
    bb, _ = make("sasrec_preln")
    ids = batch()
    got = bb(ids).numpy()
    want, valid = _reference(bb, ids)
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-4, atol=1e-4)
    # and it is not the post-LN SASRec of the same weights
    assert not np.allclose(got[valid], make("sasrec")[0](ids).numpy()[valid], atol=1e-2)
    assert bb.input_norm is None and len(bb.final_norm.weights) == 2


def test_torch_mha_init_draws_only_the_query_key_value_kernels_from_pytorchs_default():
    """``qkv_init='torch_mha'``: Q/K/V kernels ~ U(±√(6/4d)) (PyTorch's Xavier-uniform over
    its stacked (3d, d) in-projection), every other weight still N(0, initializer_range);
    the choice survives ``get_config``/``from_config`` and a bad value is refused."""
    d = 64
    cfg = Config(backbone="sasrec_preln", hidden_size=d, num_heads=1, ffn_size=d, max_len=20,
                 qkv_init="torch_mha")
    bb = PreLNSASRecBackbone.from_config_object(cfg, num_items=500)
    bb.build(None)
    bound = np.sqrt(6 / (4 * d))
    for layer in bb.encoder_layers:
        att = layer.attention
        for dense in (att.query_dense, att.key_dense, att.value_dense):
            w = dense.kernel.numpy()
            assert np.abs(w).max() <= bound
            assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound / np.sqrt(3)  # U(±b): b/√3
        for dense in (att.output_dense, layer.ffn_inner, layer.ffn_outer):
            assert abs(dense.kernel.numpy().std() - 0.02) < 0.002
    assert abs(bb.item_embedding.numpy().std() - 0.02) < 0.002
    clone = PreLNSASRecBackbone.from_config(bb.get_config())
    assert clone.encoder_layers[0].attention.qkv_init == "torch_mha"
    plain = PreLNSASRecBackbone.from_config_object(
        Config(backbone="sasrec_preln", hidden_size=d, num_heads=1, ffn_size=d, max_len=20),
        num_items=500)
    plain.build(None)
    assert abs(plain.encoder_layers[0].attention.query_dense.kernel.numpy().std() - 0.02) < 0.002
    with pytest.raises(ValueError, match="qkv_init='xavier'.*torch_mha"):
        Config(qkv_init="xavier")
    tf.keras.backend.clear_session()
