"""A trained model head as a group: probabilities from other groups' values, on real clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emodist.engine.extract import run_extract
from emodist.engine.worker import ChunkTask, Job, PreparedChunk, finish_groups, head_inputs
from emodist.errors import EmodistError
from emodist.features import make_groups
from emodist.features.head import ModelHead
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import layout, open_store
from tests.engine.heads import CLASSES, softmax_model

CHUNK = 3
@pytest.fixture(scope="module")
def dataset(demo_data) -> Path:
    return demo_data(4, 2, 12.0)


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> tuple[ModelHead, np.ndarray, np.ndarray]:
    width = make_groups(["handcrafted"])[0].width
    path = tmp_path_factory.mktemp("model") / "head.onnx"
    sha, w, b = softmax_model(path, width)
    return ModelHead(head_name="mood", groups=("handcrafted",), classes=CLASSES, sha256=sha,
                     input_width=width, model=str(path)), w, b


def spec_of(*groups) -> ExtractionSpec:
    return ExtractionSpec(groups=tuple(groups), segment_seconds=4.0)


def expected(ds, w, b) -> np.ndarray:
    z = ds["handcrafted"].values.astype(np.float64) @ w.astype(np.float64) + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_a_head_is_recorded_with_the_groups_it_reads(head):
    g, _, _ = head
    d = g.describe()
    assert d["input"] == {"kind": "groups", "sr": None, "groups": ["handcrafted"]}
    assert d["model_sha256"] == g.sha256 and d["width"] == 3
    assert "model" not in d["params"]  # where the file lies defines no value


def test_head_beside_its_group_equals_the_model_on_the_stored_values(tmp_path, dataset, head,
                                                                     client):
    g, w, b = head
    url = str(tmp_path / "s.zarr")
    res = run_extract(str(dataset), url, spec_of(make_groups(["handcrafted"])[0], g),
                      Runtime(client=client, progress=False, chunk=CHUNK))
    assert res.n_failed == 0 and res.n_done == res.n_segments == 12
    ds = open_store(url)
    np.testing.assert_allclose(ds["mood"].values, expected(ds, w, b), rtol=0, atol=2e-6)
    assert list(ds["mood"].coords[layout.feature_dim("mood")].values) == list(CLASSES)


def test_head_added_to_a_stored_group_reads_the_store_and_decodes_nothing(tmp_path, dataset,
                                                                         head, client):
    g, w, b = head
    url = str(tmp_path / "s.zarr")
    hc = make_groups(["handcrafted"])[0]
    run_extract(str(dataset), url, spec_of(hc), Runtime(client=client, progress=False,
                                                       chunk=CHUNK))
    stages = []
    res = run_extract(str(dataset), url, spec_of(hc, g),
                      Runtime(client=client, progress=False, chunk=CHUNK),
                      on_result=lambda task, r, err: stages.append((task.groups, r["stages"])))
    assert res.groups_added == ["mood"] and res.n_failed == 0
    assert stages and all(groups == ("mood",) for groups, _ in stages)
    assert not any("decode" in s for _, s in stages)  # the chunks read the stored values
    ds = open_store(url)
    np.testing.assert_allclose(ds["mood"].values, expected(ds, w, b), rtol=0, atol=2e-6)


def test_segments_whose_input_failed_fail_in_the_head(head):
    g, w, b = head
    hc = make_groups(["handcrafted"])[0]
    n = 4
    rng = np.random.default_rng(0)
    values = rng.normal(size=(n, hc.width)).astype(np.float32)
    status = np.full(n, layout.STATUS_DONE, np.int8)
    status[1] = layout.STATUS_FAILED
    values[1] = np.nan
    chunk = PreparedChunk(values={"handcrafted": values}, inputs={},
                          status={"handcrafted": status,
                                  "mood": np.full(n, layout.STATUS_DONE, np.int8)},
                          failures=[], heads=["mood"])
    task = ChunkTask(chunk=0, start=0, stop=n, rows=None, groups=("handcrafted", "mood"))
    job = Job(store="unused", spec=spec_of(hc, g))
    order, rows = head_inputs(g, chunk, task, job)
    assert order.tolist() == [0, 2, 3] and rows.shape == (3, hc.width)
    finish_groups(chunk, task, job, threads=1, models=True)
    assert chunk.status["mood"].tolist() == [1, -1, 1, 1]
    assert np.isnan(chunk.values["mood"][1]).all()
    z = values[[0, 2, 3]].astype(np.float64) @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(chunk.values["mood"][[0, 2, 3]], p / p.sum(axis=1, keepdims=True),
                               rtol=0, atol=2e-6)


def test_a_head_without_its_groups_or_hash_is_refused():
    with pytest.raises(EmodistError, match="names no input groups"):
        ModelHead(head_name="mood", groups=(), classes=CLASSES, sha256="x", input_width=1)
    with pytest.raises(EmodistError, match="names no input groups"):
        ModelHead(head_name="mood", groups=("handcrafted",), classes=CLASSES, sha256="",
                  input_width=1)


def test_a_head_reads_only_its_columns_in_its_order(head):
    g, _, _ = head
    hc = make_groups(["handcrafted"])[0]
    picked = ModelHead(head_name="mood", groups=("handcrafted",), columns=((4, 0, 7),),
                       classes=CLASSES, sha256=g.sha256, input_width=3, model=g.model)
    values = np.arange(2 * hc.width, dtype=np.float32).reshape(2, hc.width)
    chunk = PreparedChunk(values={"handcrafted": values}, inputs={},
                          status={"handcrafted": np.ones(2, np.int8)}, failures=[])
    task = ChunkTask(chunk=0, start=0, stop=2, rows=None, groups=("mood",))
    _, rows = head_inputs(picked, chunk, task, Job(store="unused", spec=spec_of(hc, picked)))
    np.testing.assert_array_equal(rows, values[:, [4, 0, 7]])
