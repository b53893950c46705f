"""EvaluationSpec: what defines an evaluation, checked once, recorded in the report."""

from __future__ import annotations

import dataclasses
import json

import pytest

from emodist.engine.pipeline import run_pipeline
from emodist.errors import EmodistError
from emodist.learn import evaluate as ev
from emodist.learn import stream
from emodist.learn.presets import DISTRIBUTION_PRESETS, QUICK_PRESETS
from emodist.learn.spec import STREAM_BLOCK_BYTES, EvaluationSpec
from tests.stores import make_store


def test_defaults_and_resolved_presets():
    spec = EvaluationSpec()
    assert (spec.folds, spec.seed, spec.balance, spec.target, spec.rank_by) == (5, 0, "none", "class",
                                                                                   "accuracy")
    assert spec.features is None and spec.label_rule is None and spec.ceiling is None
    assert "bagged-trees" in spec.classifiers and "soft-logistic-regression" not in spec.classifiers
    assert EvaluationSpec(classifiers="quick").classifiers == QUICK_PRESETS
    assert EvaluationSpec(classifiers=["Bagged Trees", "bagged-trees", "quick"]).classifiers[:2] == (
        "bagged-trees", "linear-svm")
    dist = EvaluationSpec(target="distribution", classifiers=["all"])
    assert dist.classifiers == tuple(DISTRIBUTION_PRESETS)
    assert [p.key for p in dist.presets] == list(DISTRIBUTION_PRESETS)
    assert EvaluationSpec(features="handcrafted").features == ("handcrafted",)
    assert EvaluationSpec(features=[]).features is None
    assert EvaluationSpec(balance="both").balance_modes == ["none", "weights"]
    streamed = EvaluationSpec(stream=True)
    assert streamed.classifiers == ("sgd_stream",) and streamed.presets == []
    assert streamed.block_bytes == STREAM_BLOCK_BYTES


@pytest.mark.parametrize("settings,param,message", [
    ({"target": ["shares", "valence"]}, "target", "shares is a target of its own, not a column"),
    ({"target": []}, "target", "give a target: class, factors, distribution, shares, tags or"),
    ({"rank_by": "f1"}, "rank_by", "unknown ranking metric 'f1'"),
    ({"balance": "smote"}, "balance", "unknown balance 'smote'; use none, weights, both"),
    ({"label_rule": "median"}, "label_rule", "unknown label rule 'median'; use listener, mean"),
    ({"folds": 1}, "folds", "the number of folds must be at least 2, got 1"),
    ({"folds": 2.5}, "folds", "the number of folds must be a whole number, got 2.5"),
    ({"folds": True}, "folds", "must be a whole number, got True"),
    ({"seed": "x"}, "seed", "the seed must be a whole number"),
    ({"classifiers": ["tree"]}, "classifiers", "unknown classifier 'tree'; choose from linear-svm"),
    ({"classifiers": [3]}, "classifiers", "give names as text"),
    ({"target": "distribution", "classifiers": ["linear-svm"]}, "classifiers",
     "unknown distribution model 'linear-svm'"),
    ({"features": [1]}, "features", "give names as text"),
    ({"ceiling": 3}, "ceiling", "give a path, or False to skip it; got 3"),
    ({"epochs": 0}, "epochs", "epochs must be at least 1, got 0"),
    ({"block_bytes": 0}, "block_bytes", "the block size must be positive, got 0"),
    ({"alpha": 0}, "alpha", "the penalty must be positive"),
    ({"stream": True, "classifiers": ["quick"]}, "classifiers", "not with a streamed evaluation"),
    ({"stream": True, "label_rule": "mean"}, "label_rule", "not with a streamed evaluation"),
    ({"stream": True, "ceiling": "data.csv"}, "ceiling", "not with a streamed evaluation"),
    ({"stream": True, "target": "factors"}, "target", "predicts the dominant emotion (class) only"),
])
def test_a_bad_setting_is_one_line_naming_its_parameter(settings, param, message):
    with pytest.raises(EmodistError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        EvaluationSpec(**settings)
    assert err.value.param == param
    assert "\n" not in err.value.message and "--" not in err.value.message


def test_frozen_json_round_trip_and_unknown_fields():
    spec = EvaluationSpec(features=["handcrafted", "mfcc_*"], classifiers="quick", folds=4, seed=7,
                          balance="both", target="factors", label_rule="mean",
                          rank_by="macro_f1", ceiling=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.folds = 3
    values = json.loads(json.dumps(spec.to_dict()))
    assert values["classifiers"] == list(QUICK_PRESETS) and values["features"] == ["handcrafted", "mfcc_*"]
    assert EvaluationSpec.from_dict(values) == spec
    assert spec.replace(seed=8).seed == 8 and spec.replace(seed=8) != spec
    with pytest.raises(EmodistError, match="unknown evaluation setting 'jobs'") as err:
        EvaluationSpec.from_dict({**values, "jobs": 4})
    assert err.value.param == "evaluation_spec"


def test_the_report_records_the_spec_it_ran(tmp_path):
    store = make_store(tmp_path / "s.zarr", n_tracks=12, n_segments=2)
    spec = EvaluationSpec(features=["handcrafted"], classifiers=["logistic-regression"], folds=3, seed=2,
                          ceiling=False)
    report = ev.run_evaluate(store, spec, out=str(tmp_path / "rep"), n_jobs=1)
    recorded = json.loads((tmp_path / "rep" / "report.json").read_text())["evaluation_spec"]
    assert EvaluationSpec.from_dict(recorded) == spec == EvaluationSpec.from_dict(report["evaluation_spec"])
    assert report["settings"]["folds"] == 3 and report["settings"]["classifiers"] == ["logistic-regression"]
    # the same settings as keywords make the same spec and the same folds
    again = ev.run_evaluate(store, features=["handcrafted"], classifiers=["logistic-regression"], folds=3,
                            seed=2, ceiling=False, n_jobs=1)
    assert again["evaluation_spec"] == report["evaluation_spec"]
    assert again["folds"] == report["folds"]
    with pytest.raises(TypeError, match="not both: folds"):
        ev.run_evaluate(store, spec, folds=4)
    with pytest.raises(EmodistError, match="streamed evaluation runs through") as err:
        ev.run_evaluate(store, EvaluationSpec(stream=True))
    assert err.value.param == "stream"
    streamed = stream.stream_evaluate(store, features=["handcrafted"], folds=3, seed=2, epochs=1)
    assert EvaluationSpec.from_dict(streamed["evaluation_spec"]) == EvaluationSpec(
        stream=True, features=["handcrafted"], folds=3, seed=2, epochs=1)
    with pytest.raises(EmodistError, match="not a streamed evaluation") as err:
        stream.stream_evaluate(store, spec)
    assert err.value.param == "stream"


def test_run_checks_the_evaluation_before_extracting(tmp_path):
    # the dataset does not exist: the extraction would fail on it, the spec is refused first
    with pytest.raises(EmodistError, match="at least 2, got 1") as err:
        run_pipeline(str(tmp_path / "no-dataset"), str(tmp_path / "s.zarr"), None,
                     evaluation={"folds": 1})
    assert err.value.param == "folds"
    assert not (tmp_path / "s.zarr").exists()
