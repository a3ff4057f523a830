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


@pytest.fixture(scope="session")
def data_slice(data_dir, tmp_path_factory):
    """``data_slice("beauty/Beauty.txt", 300)``: the first ``n`` lines (users) of a real
    one-user-per-line file, written to a temporary file; skips if the file is missing."""

    def make(relpath: str, n: int) -> pathlib.Path:
        src = data_dir / relpath
        if not src.is_file():
            pytest.skip(f"{src} not found")
        out = tmp_path_factory.mktemp("data") / f"{src.stem}_{n}.txt"
        with open(src) as f, open(out, "w") as g:
            for i, line in enumerate(f):
                if i >= n:
                    break
                g.write(line)
        return out

    return make
