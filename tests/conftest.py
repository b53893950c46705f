"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def emotify_root() -> Path:
    """The real Emotify subset (``EMODIST_EMOTIFY_ROOT``); skips without it."""
    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if not root or not (Path(root) / "data.csv").is_file():
        pytest.skip("EMODIST_EMOTIFY_ROOT is not set to the Emotify folder")
    return Path(root).resolve()


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """A small generated Emotify-layout dataset: 16 tracks of 20 s."""
    from emodist.data.demo import make_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "dataset"
    make_demo_dataset(out, n_tracks=16, seed=0, duration_s=20.0)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A small random Inception-shaped ONNX model built by emodist itself."""
    from emodist.models.build import build_tiny_model

    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    return build_tiny_model(str(out), seed=0)
