"""Shared inputs of the backbone and reasoning-loop tests."""
import numpy as np


def left_padded_batch(num_items: int = 30, width: int = 7, lengths=(1, 3, 7, 5, 2),
                      seed: int = 1) -> np.ndarray:
    """``(len(lengths), width)`` int32 item ids in 1..num_items, left-padded with 0 so
    that row ``b`` holds ``lengths[b]`` real items (newest last)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, num_items + 1, size=(len(lengths), width)).astype(np.int32)
    for b, n in enumerate(lengths):
        ids[b, : width - n] = 0
    return ids


def assert_cached_equals_recompute(loop, ids, steps: int, atol: float = 1e-5) -> None:
    """The KV-cached / stateful reasoning loop equals recomputing the extended sequence
    from scratch (inference mode) for ``steps`` reasoning steps."""
    cached = loop(ids, steps=steps, training=False).numpy()
    full = loop.recompute(ids, steps).numpy()
    assert cached.shape == (ids.shape[0], steps + 1, loop.backbone.hidden_size)
    assert np.abs(cached - full).max() <= atol
