"""Fixtures of the training tests: a tiny real data slice and the flags of a tiny model."""
import pathlib

import pytest

USERS = 300


@pytest.fixture(scope="session")
def beauty_slice(data_slice) -> pathlib.Path:
    """The first 300 users of Amazon Beauty (S3-Rec file), written to a temporary file
    (read with ``--dataset file --data-format sequences``)."""
    return data_slice("beauty/Beauty.txt", USERS)


@pytest.fixture(scope="session")
def tiny_flags(beauty_slice):
    """``train.main`` flags of a tiny, fast model on :func:`beauty_slice`."""

    def flags(run_dir, *extra, epochs=2, method="base"):
        return ["--dataset", "file", "--data-file", str(beauty_slice),
                "--data-format", "sequences", "--hidden-size", "16", "--num-heads", "1",
                "--ffn-size", "32", "--num-layers", "1", "--max-len", "10",
                "--batch-size", "256", "--eval-batch-size", "256", "--epochs", str(epochs),
                "--method", method, "--reason-steps", "2", "--verbose", "0",
                "--run-dir", str(run_dir), *extra]

    return flags
