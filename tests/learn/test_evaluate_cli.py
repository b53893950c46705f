"""``emodist evaluate`` on the command line."""

from __future__ import annotations

import json

import pytest

from emodist.cli import main
from emodist.errors import EmodistError
from emodist.learn.presets import PRESETS
from tests.stores import DEEP, make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("cli") / "s.zarr", n_tracks=20, n_segments=2)


@pytest.mark.parametrize("command", [["evaluate"], ["run"]])
def test_list_shows_every_preset_with_parameters(command, capsys):
    with pytest.raises(SystemExit) as e:  # like --help: before any required argument
        main([*command, "--list"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for p in PRESETS.values():
        assert p.key in out and p.name in out
    assert "kernel_scale=sqrt(P)/4" in out
    assert "ridge-regression" in out


def test_evaluate_writes_report_and_prints_ranked_table(store, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["evaluate", store, "--features", "handcrafted", "--columns", "mfcc_*", "--classifiers",
                 "linear-svm", "Medium KNN", "--folds", "4", "--seed", "3", "--workers", "1",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "Linear SVM" in text and "Medium KNN" in text and "random guess 25.0%" in text
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["seed"] == 3 and report["settings"]["folds"] == 4
    assert report["settings"]["feature_names"]["custom"] == [f"mfcc_{i:02d}" for i in range(6)]
    assert {(r["features"], r["classifier"]) for r in report["results"]} == {
        (f, c) for f in ("handcrafted", "custom") for c in ("linear-svm", "medium-knn")}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate"], "give a STORE to evaluate"),
        (["evaluate", "{tmp}/missing.zarr"], "missing.zarr: no feature store there"),
        (["evaluate", "{store}", "--classifiers", "svm"],
         "--classifiers: unknown classifier 'svm'; choose from linear-svm"),
        (["evaluate", "{store}", "--features", "chroma"],
         f"--features: 'chroma' is neither a stored feature group (handcrafted, {DEEP})"),
        (["evaluate", "{store}", "--features", "handcrafted+deep"],
         f"--features: 'deep' is not a stored feature group (the store holds handcrafted, {DEEP})"),
        (["evaluate", "{store}", "--columns", "x_*"],
         "--columns: feature pattern 'x_*' matches no feature"),
        (["evaluate", "{store}", "--folds", "50"],
         "--folds: 20 groups cannot fill 50 folds; use 20 folds or fewer"),
        (["evaluate", "{store}", "--folds", "1"], "--folds: the number of folds must be at least 2"),
        (["evaluate", "{store}", "--label-rule", "mean", "--target", "distribution",
          "--classifiers", "linear-svm"], "--classifiers: unknown distribution model 'linear-svm'"),
    ],
)
def test_evaluate_errors_are_one_line(argv, message, store, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, store=store) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("emodist: error:") and message in err


def test_run_takes_every_extract_option():
    from emodist.cli import build_parser
    from emodist.cli.pipeline import run_evaluation

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    extract_opts = {s for a in sub.choices["extract"]._actions for s in a.option_strings}
    run_opts = {s for a in sub.choices["run"]._actions for s in a.option_strings}
    assert extract_opts <= run_opts
    args = parser.parse_args(["run", "data", "--store", "s.zarr", "--out", "rep", "--features",
                              "handcrafted", "--classifiers", "quick", "--folds", "3",
                              "--rank-by", "macro_f1", "--ceiling", "none", "--columns", "rms_*"])
    assert args.func.__name__ == "cmd_run"
    assert (args.features, args.classifiers, args.folds) == (["handcrafted"], ["quick"], 3)
    evaluation, flags = run_evaluation(args)
    assert evaluation["features"] == ["handcrafted", "rms_*"] and flags == {}
    assert (evaluation["rank_by"], evaluation["ceiling"]) == ("macro_f1", False)
    assert "label_rule" not in evaluation  # the extraction's --label-rule made the labels
    evaluation, _ = run_evaluation(parser.parse_args(["run", "data", "--store", "s.zarr"]))
    assert "features" not in evaluation  # every extracted group alone, and all joined


def test_an_unknown_classifier_points_to_the_list(store, capsys):
    assert main(["evaluate", store, "--classifiers", "svm"]) == 2
    assert capsys.readouterr().err.strip().endswith("(see emodist evaluate --list)")


def test_default_features_and_log_lines_on_stderr(store, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["evaluate", store, "--classifiers", "linear-svm", "--folds", "2", "--workers", "1",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["features"] == ["handcrafted", DEEP, f"handcrafted+{DEEP}"]
    assert f"evaluated 2 fits on handcrafted+{DEEP} features" in captured.err
    assert "evaluated" not in captured.out
    assert main(["evaluate", store, "--classifiers", "linear-svm", "--folds", "2", "--workers", "1",
                 "--features", "handcrafted", "--quiet"]) == 0
    assert "evaluated" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "err"),
    [
        ([], "emodist: error: --features: "),
        (["--features", "handcrafted"], "emodist: error: --features: "),
        (["--columns", "both"], "emodist: error: --columns: "),
        (["--evaluate-features", "both"], ("emodist: --evaluate-features is deprecated; use "
                                           "--features\nemodist: error: --evaluate-features: ")),
    ],
)
def test_run_names_the_feature_flag_given(extra, err, monkeypatch, capsys):
    from emodist.engine import pipeline

    def fail(*args, **kwargs):
        raise EmodistError("'both' is neither a stored feature group (handcrafted) nor a feature "
                           "name", param="features")

    monkeypatch.setattr(pipeline, "run_pipeline", fail)
    assert main(["run", "data", "--store", "s.zarr", "--out", "rep", *extra]) == 2
    assert capsys.readouterr().err == (
        f"{err}'both' is neither a stored feature group (handcrafted) nor a feature name\n")


def test_jobs_is_a_deprecated_workers(store, tmp_path, capsys):
    assert main(["evaluate", store, "--classifiers", "linear-svm", "--folds", "2", "--jobs", "1",
                 "--features", "handcrafted", "--quiet", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "emodist: --jobs is deprecated; use --workers\n"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["settings"]["executor"] == "joblib(n_jobs=1)"
