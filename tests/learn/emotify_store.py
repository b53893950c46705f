"""A small real feature store for the training tests: handcrafted features of 16 Emotify tracks.

:func:`small_emotify_store` links the first four tracks of each genre of
``EMODIST_EMOTIFY_ROOT`` into a temporary dataset folder (the audio is not
copied) and extracts the handcrafted group of their 15 s segments into a Zarr
store with emodist's own extraction; one store per test session.
"""

from __future__ import annotations

import os
from pathlib import Path

GENRES = ("classical", "rock", "electronic", "pop")
_BUILT: dict[str, str] = {}


def small_emotify_store(emotify_root: Path, tmp_path_factory, per_genre: int = 4) -> str:
    """Path of the store (built on first use in this session)."""
    if "store" in _BUILT:
        return _BUILT["store"]
    from distributed import Client, LocalCluster

    from emodist.engine.extract import run_extract
    from emodist.features import make_groups
    from emodist.spec import ExtractionSpec, Runtime

    base = tmp_path_factory.mktemp("emotify16")
    data = base / "dataset"
    (data / "emotifymusic").mkdir(parents=True)
    os.symlink(emotify_root / "data.csv", data / "data.csv")
    for genre in GENRES:
        (data / "emotifymusic" / genre).mkdir()
        for n in range(1, per_genre + 1):
            os.symlink(emotify_root / "emotifymusic" / genre / f"{n}.mp3",
                       data / "emotifymusic" / genre / f"{n}.mp3")
    url = str(base / "store.zarr")
    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=15.0)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        result = run_extract(str(data), url, spec, Runtime(client=client, progress=False))
    assert result.n_done == result.n_segments > 0
    _BUILT["store"] = url
    return url
