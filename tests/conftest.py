"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


EMOTIFY_ENV = "EMODIST_EMOTIFY_ROOT"


def pytest_collection_modifyitems(config, items):
    """Mark every test that reads the real audio ``emotify``, through the fixture it uses.

    A test that asks for :func:`emotify_root` (directly or through another fixture) is
    marked, so ``-m "not emotify"`` leaves out exactly the tests that need the audio.
    """
    for item in items:
        if "emotify_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.emotify)


def emotify_missing_reason() -> str | None:
    """Why the real Emotify subset cannot be used, or ``None`` when it can."""
    root = os.environ.get(EMOTIFY_ENV)
    if not root:
        return f"{EMOTIFY_ENV} is not set to the Emotify folder"
    if not (Path(root) / "data.csv").is_file():
        return f"{EMOTIFY_ENV}={root} holds no data.csv"
    return None


@pytest.fixture(scope="session")
def emotify_root() -> Path:
    """The real Emotify subset (``EMODIST_EMOTIFY_ROOT``).

    Skips without it on a developer's machine; fails under CI (``CI=true``), where a
    missing folder would otherwise skip every real-audio test, the golden values included.
    """
    reason = emotify_missing_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}: the real-audio tests cannot run")
        pytest.skip(reason)
    return Path(os.environ[EMOTIFY_ENV]).resolve()


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


@pytest.fixture()
def clean_registry():
    """The feature-group registry as it was before the test (for tests that register groups)."""
    from emodist.features import REGISTRY

    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)
