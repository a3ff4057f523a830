"""Load the authors' reference numbers (../shared/reference) into rearec-tf layers.

The release uses 0-based item ids with PAD = 10 (the last row); rearec-tf reserves row 0
for padding. Item ``x`` of the release is our index ``x + 1`` and the release's PAD row is
our row 0, so the item table is permuted accordingly (the same tensor, reordered).
"""
import os

import numpy as np

import rearec_tf  # noqa: F401
import tensorflow as tf

from rearec_tf.backbones.sasrec import SASRecBackbone
from rearec_tf.reasoning.loop import ReasoningLoop

REFERENCE = os.path.join(
    os.environ.get("REAREC_SHARED_DIR",
                   os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")),
    "reference", "rearec_reference.npz")
CASES = ("", "wide/")
REF_PAD = 10


class Case:
    def __init__(self, prefix: str):
        z = np.load(REFERENCE)
        self.prefix = prefix
        self.a = {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix) and
                  (prefix or not k.startswith("wide/"))}

    def __getitem__(self, name):
        return self.a[name]

    def param(self, name):
        return self.a["param/" + name]

    def grad(self, method, name):
        return self.a[f"grad/{method}/{name}"]

    # ids ------------------------------------------------------------------
    @staticmethod
    def to_ours(ids):
        ids = np.asarray(ids)
        return np.where(ids == REF_PAD, 0, ids + 1).astype(np.int32)

    @staticmethod
    def item_table_to_ref(table):
        """Our (11, d) table (row 0 pad) -> the release's order (PAD last)."""
        table = np.asarray(table)
        return np.concatenate([table[1:], table[:1]], axis=0)

    @property
    def item_ids(self):
        return self.to_ours(self["input/item_ids"])

    @property
    def targets(self):
        return self.to_ours(self["input/targets"])

    # model ----------------------------------------------------------------
    def build(self, steps=2, max_steps=2):
        backbone = SASRecBackbone(num_items=10, max_len=6, hidden_size=8, num_layers=2,
                                  num_heads=2, ffn_size=12, hidden_dropout=0.0,
                                  attention_dropout=0.0, input_dropout=0.0)
        loop = ReasoningLoop(backbone, steps=steps, max_steps=max_steps)
        loop.build(None)
        self.load(backbone, loop)
        return backbone, loop

    def layer_map(self, backbone, loop):
        """(our variable, release parameter name, transform to ours) triples."""
        p = "trm_encoder.layer.{}."
        out = [
            (backbone.item_embedding, "item_emb.weight",
             lambda w: np.concatenate([w[REF_PAD:REF_PAD + 1], w[:REF_PAD]], 0)),
            (backbone.position_embedding, "pos_emb.weight", lambda w: w[:6]),
            (backbone.input_norm.gamma, "model.LayerNorm.weight", None),
            (backbone.input_norm.beta, "model.LayerNorm.bias", None),
            (loop.reasoning_position_embedding, "model.reason_pos_emb.weight",
             lambda w: w[: loop.max_steps]),
        ]
        for i, layer in enumerate(backbone.encoder_layers):
            q = p.format(i)
            att = layer.attention
            for dense, name in ((att.query_dense, "query_layer"), (att.key_dense, "key_layer"),
                                (att.value_dense, "value_layer"), (att.output_dense, "dense")):
                out.append((dense.kernel, f"{q}multi_head_attention.{name}.weight", np.transpose))
                out.append((dense.bias, f"{q}multi_head_attention.{name}.bias", None))
            out += [
                (layer.attention_norm.gamma, f"{q}multi_head_attention.LayerNorm.weight", None),
                (layer.attention_norm.beta, f"{q}multi_head_attention.LayerNorm.bias", None),
                (layer.ffn_inner.kernel, f"{q}feed_forward.dense_1.weight", np.transpose),
                (layer.ffn_inner.bias, f"{q}feed_forward.dense_1.bias", None),
                (layer.ffn_outer.kernel, f"{q}feed_forward.dense_2.weight", np.transpose),
                (layer.ffn_outer.bias, f"{q}feed_forward.dense_2.bias", None),
                (layer.ffn_norm.gamma, f"{q}feed_forward.LayerNorm.weight", None),
                (layer.ffn_norm.beta, f"{q}feed_forward.LayerNorm.bias", None),
            ]
        return out

    def load(self, backbone, loop):
        mapping = self.layer_map(backbone, loop)
        assert len(mapping) == 37, len(mapping)
        for var, name, fn in mapping:
            w = self.param(name)
            var.assign(fn(w) if fn else w)
