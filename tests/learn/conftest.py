"""Stores shared by the evaluation tests of :mod:`emodist.learn`."""

from __future__ import annotations

import pytest

from tests.stores import make_store


@pytest.fixture(scope="session")
def separable(tmp_path_factory) -> str:
    """40 tracks whose handcrafted features carry the class."""
    return make_store(tmp_path_factory.mktemp("learn") / "sep.zarr", n_tracks=40, separation=2.5)


@pytest.fixture(scope="session")
def shuffled(tmp_path_factory) -> str:
    """60 tracks with labels shuffled across tracks: nothing to learn."""
    return make_store(tmp_path_factory.mktemp("learn") / "shuf.zarr", n_tracks=60,
                      shuffle_labels=True, seed=3)
