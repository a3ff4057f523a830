"""Shared pytest fixtures of rearec-tf."""
import os
import pathlib

import pytest

import rearec_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports tensorflow)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """Folder of the real datasets: $REAREC_DATA_DIR, else ``../shared/data`` next to the
    repository. Tests using it are skipped when it does not exist."""
    d = pathlib.Path(os.environ.get("REAREC_DATA_DIR") or REPO_ROOT / ".." / "shared" / "data")
    d = d.resolve()
    if not d.is_dir():
        pytest.skip(f"real datasets not found at {d}; set REAREC_DATA_DIR")
    return d
