"""Shared fixtures: the offline MNIST subset, an isolated runs folder, tiny trained runs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path, monkeypatch):
    """No test reads or writes the developer's ./runs, ./data or ~/.cache."""
    monkeypatch.setenv("DIGIT_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGIT_STUDIO_REDRAW_SECONDS", raising=False)  # a developer's own setting stays theirs


@pytest.fixture
def mnist_dir() -> Path:
    """The MNIST subset shipped beside the repository (14,262 train, 10,000 test)."""
    if not (SHARED_DATA / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
        pytest.skip("the MNIST subset in ../shared/data is not present")
    return SHARED_DATA
