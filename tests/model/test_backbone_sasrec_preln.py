"""``sasrec_preln``: the SASRec reference code's block, checked against a numpy
transcription of it (√d item embeddings, queries from LayerNorm(h) and keys/values from
h, residuals from the normalised input, ReLU FFN, final LayerNorm), with padding keys
masked out."""
import numpy as np

import rearec_tf  # noqa: F401

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
