"""ONNX export of fitted presets: the graph's probabilities are scikit-learn's, on real segments."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

from emodist.errors import EmodistError
from emodist.learn.data import load_data, open_dataset
from emodist.learn.export import (
    EXPORTABLE,
    EXPORTABLE_DISTRIBUTION,
    INPUT_NAME,
    check_exportable,
    run_onnx,
    to_onnx,
)
from emodist.learn.presets import (
    PRESETS,
    get_preset,
    make_distribution_pipeline,
    make_pipeline,
    resolve_distribution_presets,
)
from emodist.learn.runs import fit_params, set_classes
from tests.learn.emotify_store import small_emotify_store

TOL = 1e-5


@pytest.fixture(scope="module")
def store(emotify_root, tmp_path_factory) -> str:
    return small_emotify_store(emotify_root, tmp_path_factory)


@pytest.fixture(scope="module")
def data(store):
    """Handcrafted features of 16 real Emotify tracks; a quarter of the tracks held out."""
    d = load_data(open_dataset(store), "handcrafted")
    tracks = list(dict.fromkeys(d.track_id))
    held = set(tracks[::4])
    train = np.array([t not in held for t in d.track_id])
    return d, d.X["handcrafted"], train


def _fit(pipe, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe.fit(X, y, **kw)


@pytest.mark.parametrize("key", EXPORTABLE)
def test_onnx_probabilities_are_sklearns(data, key):
    d, X, train = data
    preset = get_preset(key)
    pipe = make_pipeline(preset, 0)
    set_classes(pipe, d.classes)
    _fit(pipe, X[train], d.y[train],
         **fit_params(preset, train, d.y, weights=False, soft=d.soft, groups=d.track_id))
    graph = to_onnx(pipe, n_features=X.shape[1])
    X32 = X.astype(np.float32)  # the graph's input; scikit-learn gets the same values
    want = pipe.predict_proba(X32.astype(np.float64))
    got = run_onnx(graph, X32)
    assert got.shape == want.shape == (len(X), len(pipe.classes_))
    assert np.abs(got - want).max() <= TOL, key
    assert (~train).any() and np.abs(got[~train] - want[~train]).max() <= TOL  # unseen tracks too
    # what a worker gets: float32 in, no custom operator domain
    assert graph.graph.input[0].name == INPUT_NAME
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.domain for o in graph.opset_import} <= {"", "ai.onnx.ml"}


@pytest.mark.parametrize("key", EXPORTABLE_DISTRIBUTION)
def test_onnx_distribution_is_sklearns(store, data, key):
    d, X, train = data
    dd = load_data(open_dataset(store), "handcrafted", target="distribution")
    X, P = dd.X["handcrafted"], dd.distribution
    train = np.isin(dd.track_id, d.track_id[train])
    preset = resolve_distribution_presets([key])[0]
    pipe = make_distribution_pipeline(preset, 0)
    set_classes(pipe, range(P.shape[1]))
    _fit(pipe, X[train], np.argmax(P[train], axis=1), model__soft=P[train],
         model__groups=dd.track_id[train])
    X32 = X.astype(np.float32)
    got = run_onnx(to_onnx(pipe, n_features=X.shape[1]), X32)
    assert got.shape == P.shape
    assert np.abs(got - pipe.predict_proba(X32.astype(np.float64))).max() <= TOL


def test_presets_without_a_converter_are_refused_naming_those_that_work():
    refused = [k for k in PRESETS if k not in EXPORTABLE]
    assert {"cubic-svm", "rusboosted-trees", "weighted-knn"} <= set(refused)
    for key in refused:
        with pytest.raises(EmodistError) as info:
            check_exportable(key)
        assert info.value.param == "classifier"
        assert "\n" not in info.value.message and "soft-logistic-regression" in info.value.message
    with pytest.raises(EmodistError, match="ridge-regression"):
        check_exportable("ridge-regression", "distribution")
    for key in EXPORTABLE:
        check_exportable(key)

