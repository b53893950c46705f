"""Regression targets (emodist.learn.regression): in-fold tuning, scores, baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emodist.errors import EmodistError
from emodist.learn.export import ColumnRegressors, regression_to_onnx, run_onnx
from emodist.learn.folds import make_folds
from emodist.learn.regression import (
    REGRESSION_PRESETS,
    SCALE_GRID,
    Rescaled,
    ScaledGaussianSVR,
    concordance,
    concordant_scale,
    cross_val_regression,
    evaluate_regression,
    fit_columns,
    make_search,
    regression_metrics,
    regression_scores,
)


def _data(n_tracks=50, per_track=3, signal=True, seed=0, track_offset=3.0):
    """Features with a strong per-track offset; targets constant within a track."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_tracks).astype(str), per_track)
    latent = rng.normal(size=(n_tracks, 2))
    Y = np.repeat(latent, per_track, axis=0)
    offset = np.repeat(track_offset * rng.normal(size=(n_tracks, 12)), per_track, axis=0)
    X = offset + 0.3 * rng.normal(size=offset.shape)
    if signal:  # the first two columns carry the targets, without the track offset
        X[:, :2] = 4.0 * Y + 0.3 * rng.normal(size=Y.shape)
    folds = make_folds(np.zeros(len(groups)), groups, 5, seed=0)
    return X, Y, groups, folds


def test_ccc_of_a_known_pair_is_the_hand_value():
    # y = 1..4, p = y + 1: means 2.5 / 3.5, variances 1.25, covariance 1.25,
    # so CCC = 2 * 1.25 / (1.25 + 1.25 + 1) = 5/7.
    assert concordance([1, 2, 3, 4], [2, 3, 4, 5]) == pytest.approx(5 / 7)
    # Another pair, by the equivalent form r * 2 sx sy / (sx^2 + sy^2 + (mx - my)^2).
    y = np.array([0.2, 0.5, 0.1, 0.9, 0.4])
    p = np.array([0.3, 0.3, 0.2, 0.6, 0.5])
    r = np.corrcoef(y, p)[0, 1]
    sx, sy = y.std(), p.std()
    assert concordance(y, p) == pytest.approx(r * 2 * sx * sy / (sx**2 + sy**2 + (y.mean() - p.mean()) ** 2))
    assert concordance(y, np.full(5, 0.4)) == 0.0


def test_scores_equal_sklearn_and_scipy_on_the_same_predictions():
    X, Y, groups, folds = _data()
    report = evaluate_regression(X, Y, names=["valence", "arousal"], groups=groups, folds=folds,
                                 presets=["ridge"])
    res = report["results"][0]
    P = res["pred"]
    assert np.isfinite(P).all()
    for j, name in enumerate(["valence", "arousal"]):
        m = res["metrics"]["segment"][name]
        per_fold = {"r2": [], "rmse": [], "pearson": [], "spearman": []}
        for k in range(5):
            t, p = Y[folds == k, j], P[folds == k, j]
            per_fold["r2"].append(r2_score(t, p))
            per_fold["rmse"].append(np.sqrt(mean_squared_error(t, p)))
            per_fold["pearson"].append(pearsonr(t, p).statistic)
            per_fold["spearman"].append(spearmanr(t, p).statistic)
        for metric, values in per_fold.items():
            assert m[metric]["mean"] == pytest.approx(np.mean(values))
            assert m[metric]["std"] == pytest.approx(np.std(values))
        assert m["r2"]["pooled"] == pytest.approx(r2_score(Y[:, j], P[:, j]))
        # Track level: means over each track's segments, computed here with pandas.
        frame = pd.DataFrame({"g": groups, "y": Y[:, j], "p": P[:, j], "f": folds}).groupby("g").mean()
        track_r2 = [r2_score(frame.y[frame.f == k], frame.p[frame.f == k]) for k in range(5)]
        assert res["metrics"]["track"][name]["r2"]["mean"] == pytest.approx(np.mean(track_r2))
    assert report["results"][0]["metrics"]["segment"]["mean"]["r2"] > 0.8


def test_shuffled_targets_stay_at_chance_under_grouped_folds():
    # Every segment of a track shares a strong offset: a model that saw a test
    # track's other segments in training would recognise it (R^2 near 1).
    X, Y, groups, folds = _data()
    rng = np.random.default_rng(1)
    shuffled = np.repeat(Y[::3][rng.permutation(50)], 3, axis=0)  # track targets swapped
    report = evaluate_regression(X, shuffled, names=["a", "b"], groups=groups, folds=folds,
                                 presets=["ridge", "knn", "ridge-rescaled"])
    for res in report["results"]:
        assert res["metrics"]["segment"]["mean"]["r2"] <= 0.05
        assert abs(res["metrics"]["segment"]["mean"]["ccc"]) <= 0.2


def test_train_mean_baseline_has_no_skill():
    X, Y, groups, folds = _data()
    base = evaluate_regression(X, Y, names=["a", "b"], groups=groups, folds=folds,
                               presets=["ridge"])["baseline"]
    for name in ("a", "b"):
        assert base["segment"][name]["r2"]["mean"] <= 0.0
        assert base["segment"][name]["ccc"]["mean"] == pytest.approx(0.0, abs=1e-12)
        assert np.isnan(base["segment"][name]["pearson"]["mean"])


def test_inner_search_never_splits_a_group():
    X, Y, groups, folds = _data()
    train = folds != 0
    search = make_search(REGRESSION_PRESETS["ridge"].pipeline(0), {"alpha": (1.0, 10.0)},
                         groups[train], seed=0)
    g = groups[train]
    for tr, va in search.cv.split(X[train], Y[train, 0], g):
        assert not set(g[tr]) & set(g[va])
    assert set(np.unique(folds)) == set(range(5))
    for k in range(5):
        assert not set(groups[folds == k]) & set(groups[folds != k])


@pytest.mark.parametrize("key", [k for k, p in REGRESSION_PRESETS.items() if not p.multi_output])
def test_every_preset_learns_the_signal_and_reports_its_choice(key):
    X, Y, groups, folds = _data(n_tracks=30, per_track=2, track_offset=0.5)
    run = cross_val_regression(X, Y[:, 0], groups, folds, preset=key)
    assert run.pred.shape == (60,)
    assert regression_scores(Y[:, 0], run.pred)["r2"] > 0.3  # chance is <= 0
    grid = REGRESSION_PRESETS[key].grid
    extra = {"scale"} if REGRESSION_PRESETS[key].rescale else set()
    for fold in run.chosen:
        assert set(fold[0]) == set(grid) | extra
        assert all(fold[0][p] in grid[p] for p in grid)


def _shares(n_tracks=40, per_track=3, seed=0, k=5):
    """Per-track shares (softmax of a latent), features that carry the latent with noise."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_tracks).astype(str), per_track)
    Z = rng.normal(size=(n_tracks, 4))
    Y = np.exp(Z @ rng.normal(size=(4, k)))
    Y = np.repeat(Y / Y.sum(axis=1, keepdims=True), per_track, axis=0)
    X = np.repeat(Z, per_track, axis=0) @ rng.normal(size=(4, 30)) + rng.normal(size=(len(groups), 30))
    folds = make_folds(np.zeros(len(groups)), groups, 5, seed=0)
    return X, Y, groups, folds


def test_softmax_shares_predicts_compositions_and_learns_them():
    X, Y, groups, folds = _shares()
    run = cross_val_regression(X, Y, groups, folds, preset="softmax-shares")
    assert run.pred.shape == Y.shape
    assert (run.pred >= 0).all()
    np.testing.assert_allclose(run.pred.sum(axis=1), 1.0, atol=1e-9)
    r2 = np.mean([r2_score(Y[:, j], run.pred[:, j]) for j in range(Y.shape[1])])
    assert r2 > 0.5  # chance is <= 0
    grid = REGRESSION_PRESETS["softmax-shares"].grid["C"]
    assert all(len(fold) == 1 and fold[0]["C"] in grid for fold in run.chosen)  # one joint model


def test_softmax_shares_refuses_targets_that_are_not_shares():
    X, Y, groups, folds = _data(n_tracks=10, per_track=2)  # normal targets, some negative
    with pytest.raises(EmodistError, match="softmax-shares predicts non-negative shares") as err:
        cross_val_regression(X, Y, groups, folds, preset="softmax-shares")
    assert err.value.param == "classifiers"


def test_shuffled_shares_stay_at_chance_under_grouped_folds():
    X, Y, groups, folds = _shares(n_tracks=50)
    X = X + np.repeat(3.0 * np.random.default_rng(2).normal(size=(50, 30)), 3, axis=0)  # track offset
    rng = np.random.default_rng(1)
    shuffled = np.repeat(Y[::3][rng.permutation(50)], 3, axis=0)
    for key in ("softmax-shares", "ridge-rescaled"):
        run = cross_val_regression(X, shuffled, groups, folds, preset=key)
        m = regression_metrics(shuffled, run.pred, folds, groups, [str(j) for j in range(5)])
        assert m["segment"]["mean"]["r2"] <= 0.05, key
        assert abs(m["segment"]["mean"]["ccc"]) <= 0.2, key


@pytest.mark.parametrize("key", ["ridge-rescaled", "softmax-shares"])
def test_outer_test_fold_never_reaches_the_choice(key):
    # Each test row's prediction and each fold's choice must not move when
    # the targets of that fold's test rows change.
    X, Y, groups, folds = _shares()
    run = cross_val_regression(X, Y, groups, folds, preset=key)
    other = _shares(seed=7)[1]  # other valid shares
    for k in (0, 3):
        Yk = np.where((folds == k)[:, None], other, Y)
        again = cross_val_regression(X, Yk, groups, folds, preset=key)
        np.testing.assert_array_equal(again.pred[folds == k], run.pred[folds == k])
        assert again.chosen[k] == run.chosen[k]
        assert not np.array_equal(again.pred[folds != k], run.pred[folds != k])  # training changed


def test_rescaled_ridge_equals_a_direct_computation():
    X, Y, groups, folds = _data(n_tracks=40, per_track=2, track_offset=0.5)
    y = Y[:, 0] + 0.8 * np.random.default_rng(3).normal(size=len(Y))  # noisy: ridge shrinks
    run = cross_val_regression(X, y, groups, folds, preset="ridge-rescaled")
    for k in range(5):
        tr, te = folds != k, folds == k
        alpha = run.chosen[k][0]["alpha"]
        assert alpha in REGRESSION_PRESETS["ridge"].grid["alpha"]
        inner = GroupKFold(n_splits=4, shuffle=True, random_state=0)
        oof = np.empty(int(tr.sum()))
        for a, b in inner.split(X[tr], y[tr], groups[tr]):
            m = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X[tr][a], y[tr][a])
            oof[b] = m.predict(X[tr][b])
        mu = y[tr].mean()

        def criterion(c, t=y[tr], d=oof - mu, mu=mu):
            p = mu + c * d
            ccc = 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
            return (r2_score(t, p) + ccc) / 2

        scores = [criterion(c) for c in SCALE_GRID]
        scale = SCALE_GRID[int(np.argmax(scores))]
        assert run.chosen[k][0]["scale"] == pytest.approx(scale)
        full = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X[tr], y[tr])
        np.testing.assert_allclose(run.pred[te], mu + scale * (full.predict(X[te]) - mu), rtol=1e-9)
    assert any(fold[0]["scale"] > 1 for fold in run.chosen)  # the shrinkage was undone somewhere


def test_concordant_scale_undoes_a_known_shrinkage():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    scale, score = concordant_scale(y, 0.5 * (y - 0.2) + 0.2, 0.2)  # deviations halved
    assert scale == pytest.approx(2.0, rel=0.03)  # the grid's step is 2.5 %
    assert score == pytest.approx(1.0, abs=1e-3)
    assert concordant_scale(y, rng.normal(size=200), 0.0)[0] < 0.3  # noise: (nearly) the mean


def test_joint_fit_and_scatter_plots(tmp_path):
    X, Y, groups, folds = _data(n_tracks=30, per_track=2)
    report = evaluate_regression(X, Y, names=["a", "b"], groups=groups, folds=folds,
                                 presets=["pls"], joint=True, plots_dir=tmp_path)
    assert len(report["results"][0]["chosen"][0]) == 1
    for name in ("a", "b"):
        png = tmp_path / f"scatter_pls_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svr_kernel_scale_follows_matlab():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 16)), rng.normal(size=40)
    model = ScaledGaussianSVR(scale_factor=4.0).fit(X, y)
    assert model.svr_.gamma == pytest.approx(1 / (16 * 16))


def test_unknown_preset_names_the_parameter():
    X, Y, groups, folds = _data(n_tracks=10, per_track=1)
    with pytest.raises(EmodistError, match="unknown regression model 'lasso'") as err:
        evaluate_regression(X, Y, names=["a", "b"], groups=groups, folds=folds, presets=["lasso"])
    assert err.value.param == "classifiers"


def test_rescaled_ridge_onnx_is_its_predict():
    X, Y, groups, _ = _data(n_tracks=30, per_track=2, track_offset=0.5)
    y = Y + 0.8 * np.random.default_rng(3).normal(size=Y.shape)
    models, chosen = fit_columns(X, y, groups, preset=REGRESSION_PRESETS["ridge-rescaled"])
    assert all(isinstance(m, Rescaled) for m in models)
    assert any(c["scale"] != 1.0 for c in chosen)  # the affine map is not the identity
    model = ColumnRegressors(models)
    X32 = X.astype(np.float32)
    want = model.predict(X32.astype(np.float64))
    got = run_onnx(regression_to_onnx(model, n_features=X.shape[1]), X32)
    assert got.shape == want.shape == (60, 2)
    assert np.abs(got - want).max() <= 1e-5


def test_softmax_shares_onnx_is_its_predict_beside_single_column_models():
    X, Y, groups, _ = _shares(n_tracks=30)
    (joint,), _ = fit_columns(X, Y, groups, preset=REGRESSION_PRESETS["softmax-shares"])
    (single,), _ = fit_columns(X, Y[:, :1], groups, preset=REGRESSION_PRESETS["ridge"])
    model = ColumnRegressors([joint, single])  # the shares, then one more column
    X32 = X.astype(np.float32)
    want = model.predict(X32.astype(np.float64))
    got = run_onnx(regression_to_onnx(model, n_features=X.shape[1]), X32)
    k = Y.shape[1]
    assert got.shape == want.shape == (len(X), k + 1)
    assert np.abs(got - want).max() <= 1e-5
    assert np.allclose(got[:, :k].sum(axis=1), 1.0, atol=1e-6)  # shares sum to 1
