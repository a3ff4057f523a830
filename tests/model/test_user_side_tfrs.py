"""The README's "use the layers in your own TFRS model" example, trained and saved."""
import numpy as np

import rearec_tf  # noqa: F401  (first: makes tf.keras tf-keras)
import tensorflow as tf
import tensorflow_recommenders as tfrs

from rearec_tf.backbones import SASRecBackbone
from rearec_tf.reasoning import ReasoningLoop
from rearec_tf.tasks import ERLObjective, RecommendationLoss


# --- begin README example ---
class MyReaRec(tfrs.models.Model):
    def __init__(self, num_items: int):
        super().__init__()
        self.backbone = SASRecBackbone(num_items, max_len=20, hidden_size=32, num_heads=2,
                                       ffn_size=64)
        self.reasoning = ReasoningLoop(self.backbone, steps=2)      # r0 .. r2, KV-cached
        self.objective = ERLObjective(RecommendationLoss("retrieval"), temperature=0.5)

    def compute_loss(self, features, training=False):
        R = self.reasoning(features["item_ids"], training=training)  # (B, 3, d)
        parts = self.objective(R, features["target"], self.backbone.item_embeddings)
        return parts["loss"]

    def call(self, item_ids):                                        # user embeddings
        return self.objective.aggregate(self.reasoning(item_ids))
# --- end README example ---


def test_user_side_model_trains_and_saves(tmp_path):
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 101, size=(256, 20)).astype(np.int32)
    ids[:, :10] = 0
    target = ((ids[:, -1] % 100) + 1).astype(np.int32)  # a learnable rule
    ds = tf.data.Dataset.from_tensor_slices({"item_ids": ids, "target": target}).batch(64)
    model = MyReaRec(num_items=100)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    history = model.fit(ds, epochs=4, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]

    @tf.function(input_signature=[tf.TensorSpec([None, 20], tf.int32)])
    def embed(item_ids):
        return {"embedding": model(item_ids)}

    path = str(tmp_path / "saved")
    tf.saved_model.save(model, path, signatures={"serving_default": embed})
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](item_ids=tf.constant(ids[:8]))["embedding"]
    np.testing.assert_allclose(out.numpy(), model(ids[:8]).numpy(), atol=1e-5)
