"""Cached ONNX Runtime sessions and batched embedding, on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emodist.errors import EmodistError, ModelError
from emodist.models import build
from emodist.models import session as ds


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 299, 299), dtype=np.uint8)
    ramp = np.linspace(0, 255, 299, dtype=np.float32)
    out = [base[0], np.broadcast_to(ramp, (299, 299)), np.broadcast_to(ramp[:, None], (299, 299))]
    out += list(rng.integers(0, 256, (7, 299, 299), dtype=np.uint8))
    return np.ascontiguousarray(np.stack(out).astype(np.uint8))


@pytest.fixture()
def model_copy(tiny_model, tmp_path) -> str:
    dst = tmp_path / "m.onnx"
    shutil.copy(tiny_model, dst)
    shutil.copy(tiny_model + ".json", str(dst) + ".json")
    return str(dst)


def test_sidecar_describes_the_tiny_model(tiny_model):
    meta = ds.read_sidecar(tiny_model)
    assert meta["output_dim"] == 128
    assert meta["input_name"] == "images" and meta["output_name"] == "features"
    assert meta["image_size"] == 299
    assert meta["sha256"] == build.file_sha256(Path(tiny_model).read_bytes())
    assert "x / 128 - 1" in meta["input_contract"]


def test_embed_shape_finite_deterministic(tiny_model, images):
    a = ds.embed(images, tiny_model, batch_size=4)
    b = ds.embed(images, tiny_model, batch_size=4)
    assert a.shape == (len(images), 128) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # different pictures give different features
    assert np.abs(a[1] - a[2]).max() > 1e-3
    assert np.abs(a[0] - a[3]).max() > 1e-4


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_embed_is_batch_size_invariant(tiny_model, images, batch_size):
    ref = ds.embed(images, tiny_model, batch_size=len(images))
    got = ds.embed(images, tiny_model, batch_size=batch_size)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_embed_matches_a_direct_session_run(tiny_model, images):
    from emodist.models.build import to_network_input

    sess = ds.get_session(tiny_model)
    direct = sess.run(["features"], {"images": to_network_input(images[:2])})[0]
    np.testing.assert_allclose(ds.embed(images[:2], tiny_model), direct, atol=1e-6)


def test_embed_empty_and_bad_inputs(tiny_model, images):
    assert ds.embed(images[:0], tiny_model).shape == (0, 128)
    with pytest.raises(ModelError, match="smaller"):
        ds.embed(np.zeros((1, 40, 40), np.uint8), tiny_model)
    with pytest.raises(EmodistError, match="uint8"):
        ds.embed(images.astype(np.float32), tiny_model)
    with pytest.raises(EmodistError, match="batch size"):
        ds.embed(images, tiny_model, batch_size=0)


def test_other_image_sizes_are_accepted(tiny_model, images):
    out = ds.embed(np.ascontiguousarray(images[:2, :128, :100]), tiny_model)
    assert out.shape == (2, 128) and np.isfinite(out).all()


def test_session_is_cached_per_model_and_threads(tiny_model):
    s1 = ds.get_session(tiny_model, threads=1)
    assert ds.get_session(tiny_model, threads=1) is s1
    s2 = ds.get_session(tiny_model, threads=2)
    assert s2 is not s1 and ds.get_session(tiny_model, threads=2) is s2


def test_hash_mismatch_is_refused(model_copy):
    data = bytearray(Path(model_copy).read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the last initializer
    Path(model_copy).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        ds.get_session(model_copy)


def test_requested_hash_is_checked(model_copy):
    with pytest.raises(ModelError, match="requested"):
        ds.get_session(model_copy, sha256="0" * 64)
    meta = ds.read_sidecar(model_copy)
    assert ds.get_session(model_copy, sha256=meta["sha256"]) is not None
    with pytest.raises(ModelError):  # cached session, other hash asked for
        ds.embed(np.zeros((1, 80, 80), np.uint8), model_copy, sha256="1" * 64)


def test_rebuilt_model_is_reloaded_when_its_new_hash_is_asked_for(model_copy, images):
    first = ds.embed(images[:2], model_copy)
    build.build_tiny_model(model_copy, seed=5)  # same path, other weights
    new_sha = ds.read_sidecar(model_copy)["sha256"]
    second = ds.embed(images[:2], model_copy, sha256=new_sha)
    assert np.abs(first - second).max() > 1e-3
    assert ds.get_session(model_copy) is ds.get_session(model_copy, sha256=new_sha)


def test_missing_model_or_sidecar(tmp_path, model_copy):
    with pytest.raises(ModelError, match="model not found"):
        ds.get_session(str(tmp_path / "nothing.onnx"))
    Path(model_copy + ".json").unlink()
    with pytest.raises(ModelError, match="sidecar"):
        ds.read_sidecar(model_copy)
    Path(model_copy + ".json").write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        ds.read_sidecar(model_copy)
    Path(model_copy + ".json").write_text(json.dumps({"sha256": "x"}))
    with pytest.raises(ModelError, match="lacks"):
        ds.read_sidecar(model_copy)


def test_sidecar_that_disagrees_with_the_graph(model_copy):
    side = Path(model_copy + ".json")
    meta = json.loads(side.read_text())
    side.write_text(json.dumps(dict(meta, output_dim=64)))
    with pytest.raises(ModelError, match="128 features"):
        ds.get_session(model_copy)
    side.write_text(json.dumps(dict(meta, input_name="pixels")))
    with pytest.raises(ModelError, match="pixels"):
        ds.get_session(model_copy)


def test_corrupt_model_file_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    meta = {"sha256": build.file_sha256(bad.read_bytes()), "output_dim": 4, "input_name": "images",
            "output_name": "features", "image_size": 299}
    Path(str(bad) + ".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        ds.get_session(str(bad))


def test_default_model_path_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMODIST_MODEL", str(tmp_path / "x.onnx"))
    assert ds.default_model_path() == str(tmp_path / "x.onnx")
    monkeypatch.delenv("EMODIST_MODEL")
    path = ds.default_model_path()
    assert path.endswith(ds.MODEL_FILE) and "emodist" in path


@pytest.mark.s3
def test_model_read_from_s3(tiny_model, images):
    import boto3
    import s3fs

    from tests.servers import S3_KEY, S3_REGION, S3_SECRET, moto_server

    with moto_server() as (endpoint, opts):
        boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION, aws_access_key_id=S3_KEY,
                     aws_secret_access_key=S3_SECRET).create_bucket(Bucket="models")
        fs = s3fs.S3FileSystem(**opts)
        fs.put(tiny_model, "models/tiny.onnx")
        fs.put(tiny_model + ".json", "models/tiny.onnx.json")
        url = "s3://models/tiny.onnx"
        assert ds.read_sidecar(url, storage_options=opts)["output_dim"] == 128
        remote = ds.embed(images[:3], url, storage_options=opts)
    np.testing.assert_array_equal(remote, ds.embed(images[:3], tiny_model))


def _embed_on_worker(model: str, images: np.ndarray) -> tuple[int, int, int, np.ndarray]:
    import os

    from emodist.models import session

    feats = session.embed(images, model, batch_size=2)
    return os.getpid(), id(session.get_session(model)), len(session._SESSIONS), feats


@pytest.mark.cluster
def test_one_session_per_worker_process(tiny_model, images):
    from distributed import Client

    from tests.servers import dask_cluster

    with dask_cluster(n_workers=2, nthreads=1) as (address, _workers), \
            Client(address, timeout=60) as client:
        futures = [client.submit(_embed_on_worker, tiny_model, images[i: i + 3], pure=False)
                   for i in range(6)]
        results = client.gather(futures)
    by_pid: dict[int, set[int]] = {}
    for pid, sess_id, n_sessions, _ in results:
        by_pid.setdefault(pid, set()).add(sess_id)
        assert n_sessions == 1
    assert all(len(ids) == 1 for ids in by_pid.values())  # created once, reused
    local = ds.embed(images[:3], tiny_model)
    np.testing.assert_allclose(results[0][3], local, atol=1e-6)
