"""The public datasets' own targets, end to end: catalog, extraction, evaluation, training.

PMEmo and MTG-Jamendo folders are written in their published layouts
(:mod:`tests.data.layouts`) with generated audio whose pitch carries the
static valence and the tags and whose loudness, changing every 2 s, carries
the 0.5 s arousal ratings.  The stores are real extractions of the
handcrafted group; every expected number is computed here from the CSV files
and scikit-learn directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from emodist.cli import main
from emodist.errors import EmodistError
from emodist.learn.votes import column_targets, evaluate_votes, load_vote_data
from emodist.store import open_store
from tests.data.layouts import SR, write_deam, write_mtg, write_pmemo
from tests.stores import make_table, write_store

pytestmark = pytest.mark.cluster

SEGMENT_S = 2.0
N_PMEMO = 16
#: The handcrafted features that carry pitch and loudness (evaluated as --columns: fast fits).
COLUMNS = ("rms", "spectral_centroid_mean")
N_MTG = 20
TAGS = ("film", "happy", "sad")


def _music(path: Path, hz: float, levels, piece_s: float = SEGMENT_S) -> None:
    """A tone at ``hz`` whose loudness is ``levels[k]`` during the k-th ``piece_s`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round((len(levels) * piece_s + 0.5) * SR)) / SR
    level = np.asarray(levels)[np.minimum((t // piece_s).astype(int), len(levels) - 1)]
    wave = level * (np.sin(2 * np.pi * hz * t) + 0.3 * np.sin(2 * np.pi * 2.01 * hz * t))
    sf.write(path, wave.astype(np.float32), SR, format="MP3")


def _extract(root: Path, url: Path, client) -> str:
    from emodist.engine.extract import run_extract
    from emodist.features import make_groups
    from emodist.spec import ExtractionSpec, Runtime

    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=SEGMENT_S)
    result = run_extract(str(root), str(url), spec,
                         Runtime(client=client, progress=False, batch_size=8, chunk=8))
    assert result.n_failed == 0
    return str(url)


def _pmemo_annotations(seed: int = 0):
    """Static (arousal, valence), artists and 0.5 s rows (id, time, arousal, valence)."""
    rng = np.random.default_rng(seed)
    static, artists, dynamic, audio = {}, {}, [], {}
    for i in range(1, N_PMEMO + 1):
        hz = 220.0 * 2 ** ((i - 1) / 6)
        levels = rng.choice([0.05, 0.2, 0.6], size=3)
        valence = round((hz - 220.0) / 1000 + rng.normal(0, 0.02), 4)
        static[i] = (round(float(rng.uniform(0.2, 0.8)), 4), valence)
        artists[i] = f"Artist {(i - 1) // 2}"
        first = 0.5 if i % 2 == 0 else 2.5  # odd songs rated from 2.5 s: their first segment has none
        for t in np.arange(first, 6.01, 0.5):
            a = levels[min(int(t // SEGMENT_S), 2)] + rng.normal(0, 0.02)
            dynamic.append((i, float(t), round(float(a), 4), round(valence + rng.normal(0, 0.05), 4)))
        audio[i] = (hz, levels)
    return static, artists, dynamic, audio


@pytest.fixture(scope="module")
def pmemo(tmp_path_factory, client):
    """A PMEmo folder, its handcrafted store, and a folder of the same songs rated at random."""
    base = tmp_path_factory.mktemp("pmemo")
    static, artists, dynamic, audio = _pmemo_annotations()
    root = base / "pmemo"
    write_pmemo(root, audio_ids=(), stray=(), static=static, artists=artists, dynamic=dynamic)
    for i, (hz, levels) in audio.items():
        _music(root / "PMEmo2019" / "chorus" / f"{i}.mp3", hz, levels)
    store = _extract(root, base / "pmemo.zarr", client)
    # the same songs, their ratings shuffled across songs: nothing to learn
    rng = np.random.default_rng(7)
    ids = list(static)
    perm = dict(zip(ids, rng.permutation(ids)))
    shuffled = base / "shuffled"
    write_pmemo(shuffled, audio_ids=(), stray=(), artists=artists,
                static={i: static[int(perm[i])] for i in ids},
                dynamic=[(i, t, a, v) for j, t, a, v in dynamic for i in ids if perm[i] == j])
    return {"root": root, "store": store, "shuffled": shuffled, "base": base}


def _mtg_rows_and_splits():
    """20 tracks of 10 artists; happy (high) / sad (low) by artist, film on every first track."""
    rows, audio = [], {}
    for n in range(N_MTG):
        artist = n // 2
        tags = ["happy" if artist < 5 else "sad"] + (["film"] if n % 2 == 0 else [])
        tid = f"track_{n:07d}"
        rows.append((tid, f"artist_{artist:06d}", f"album_{artist:06d}", f"{n % 100:02d}/{n}.mp3",
                     "4.5", tags))
        audio[tid] = (880.0 * 2 ** (artist % 5 / 5) if artist < 5 else 220.0 * 2 ** (artist % 5 / 5),
                      [0.3 if n % 2 == 0 else 0.1, 0.2])
    splits = {}
    for k in range(5):
        test = {k, k + 5}
        validation = {(k + 1) % 5, (k + 1) % 5 + 5}
        train = set(range(10)) - test - validation
        splits[k] = {part: [f"artist_{a:06d}" for a in sorted(artists)]
                     for part, artists in (("train", train), ("validation", validation),
                                           ("test", test))}
    return rows, splits, audio


@pytest.fixture(scope="module")
def mtg(tmp_path_factory, client):
    base = tmp_path_factory.mktemp("mtg")
    rows, splits, audio = _mtg_rows_and_splits()
    root = base / "mtg"
    write_mtg(root, rows=rows, splits=splits)
    for r in rows:
        hz, levels = audio[r[0]]
        _music(root / "audio" / r[3], hz, levels)
    return {"root": root, "store": _extract(root, base / "mtg.zarr", client), "rows": rows}


def _direct_means(root: Path, store: str) -> pd.DataFrame:
    """Each segment's mean of the dynamic CSV rows in its span, by pandas alone."""
    dyn = pd.read_csv(root / "PMEmo2019" / "annotations" / "dynamic_annotations.csv")
    ds = open_store(store)
    segs = pd.DataFrame({"track": ds["track_id"].values.astype(str), "start": ds["start_s"].values,
                         "duration": ds["duration_s"].values},
                        index=ds["segment"].values.astype(str))
    out = {}
    for sid, s in segs.iterrows():
        rated = dyn[(dyn["musicId"].astype(str) == s["track"]) & (dyn["frameTime"] >= s["start"])
                    & (dyn["frameTime"] < s["start"] + s["duration"])]
        out[sid] = (rated["Valence(mean)"].mean(), rated["Arousal(mean)"].mean())
    return pd.DataFrame.from_dict(out, orient="index", columns=["valence", "arousal"])


def _features(ds, segment_ids) -> np.ndarray:
    """The :data:`COLUMNS` of the given segments, read from the store."""
    names = [str(n) for n in ds["handcrafted_feature"].values]
    cols = [n for n in names if n in COLUMNS]  # store order, as the evaluation reads them
    sub = ds["handcrafted"].sel(segment=np.asarray(segment_ids), handcrafted_feature=cols)
    return sub.values.astype(np.float64)


# ------------------------------------------------------------------ continuous targets


def test_segments_get_the_mean_of_the_annotations_in_their_span(pmemo):
    data = load_vote_data(pmemo["store"])
    targets = column_targets(data, ["valence", "arousal"])
    direct = _direct_means(pmemo["root"], pmemo["store"]).loc[data.segment_id]
    assert targets.sources == {"valence": "per-segment mean of the 0.5 s annotations",
                               "arousal": "per-segment mean of the 0.5 s annotations"}
    np.testing.assert_allclose(targets.Y, direct.to_numpy(), rtol=1e-12)  # NaN where none
    assert (targets.keep == direct.notna().all(axis=1).to_numpy()).all()
    # odd songs are rated from 2.5 s: their first segment has no value
    first = data.segment_id[~targets.keep]
    assert len(first) == N_PMEMO // 2 and all(int(s.split(":")[0]) % 2 for s in first)
    static = column_targets(data, ["valence", "arousal"], annotations="static")
    cat = pd.read_csv(pmemo["root"] / "PMEmo2019" / "annotations" / "static_annotations.csv",
                      index_col="musicId")
    want = cat.loc[data.track_id.astype(int), ["Valence(mean)", "Arousal(mean)"]].to_numpy()
    np.testing.assert_allclose(static.Y, want)
    assert static.keep.all() and set(static.sources.values()) == {"the track's static rating"}
    one = column_targets(data, ["arousal"], annotations="dynamic")  # one column alone
    np.testing.assert_allclose(one.Y[:, 0], direct["arousal"].to_numpy(), rtol=1e-12)


def test_deam_segments_average_the_wide_files(tmp_path):
    """DEAM's wide valence.csv / arousal.csv (from 15 s on), on 15 s segments of songs 1-5."""
    root = tmp_path / "deam"
    write_deam(root, audio_ids=(), stray=())
    table = make_table(n_tracks=5, per_track=3)  # tracks "1".."5", segments at 0, 15, 30 s
    write_store(tmp_path / "s.zarr", table, {"hc": (["a"], np.ones((len(table), 1)))},
                attrs={"dataset": f"deam:{root}"})
    data = load_vote_data(str(tmp_path / "s.zarr"))
    got = column_targets(data, ["valence", "arousal"]).Y
    folder = next(root.rglob("dynamic (per second annotations)"))
    for j, name in enumerate(("valence", "arousal")):
        wide = pd.read_csv(folder / f"{name}.csv", index_col="song_id")
        for i, seg in table.iterrows():
            row = wide.loc[int(seg["track_id"])] if int(seg["track_id"]) in wide.index else None
            stamps = [] if row is None else [
                v for c, v in row.items() if not pd.isna(v)
                and seg["start_s"] <= int(c[7:-2]) / 1000 < seg["start_s"] + seg["duration_s"]]
            want = np.mean(stamps) if stamps else np.nan
            np.testing.assert_allclose(got[i, j], want, rtol=1e-12)
    assert np.isfinite(got).all(axis=1).sum() == 3  # songs 2, 3 and 5 rated in their [15, 30) s
    static = column_targets(data, ["valence_std"])  # DEAM rates no std over time: static
    assert static.sources == {"valence_std": "the track's static rating"}
    assert static.Y[table["track_id"] == "3", 0] == pytest.approx([1.75] * 3)


def _direct_ridge_r2(X, y, groups, folds, seed=0):
    """Per-fold R² of the ridge preset rebuilt from scikit-learn: scaler, ridge, grouped alpha search."""
    scores = []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        n_groups = len(np.unique(groups[train]))
        search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("model", Ridge())]),
                              {"model__alpha": [1.0, 10.0, 100.0, 1e3, 1e4, 1e5]},
                              cv=GroupKFold(n_splits=min(4, n_groups), shuffle=True, random_state=seed),
                              scoring="r2", refit=True, error_score=np.nan)
        search.fit(X[train], y[train], groups=groups[train])
        scores.append(r2_score(y[test], search.predict(X[test])))
    return scores


def test_evaluate_valence_arousal_matches_scikit_learn(pmemo, tmp_path, capsys):
    out = tmp_path / "va"
    assert main(["evaluate", pmemo["store"], "--target", "valence", "arousal", "--folds", "4",
                 "--columns", *COLUMNS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("custom: ridge mean R2 ")
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "regression"
    assert report["config"]["annotations"] == {
        "valence": "per-segment mean of the 0.5 s annotations",
        "arousal": "per-segment mean of the 0.5 s annotations"}
    assert report["excluded"]["no value of every target (outside the annotated span)"] == N_PMEMO // 2
    assert report["n_segments"] == 3 * N_PMEMO - N_PMEMO // 2
    md = (out / "report.md").read_text()
    assert (f"Left out: no value of every target (outside the annotated span): {N_PMEMO // 2} "
            "segments.") in md
    assert "valence: per-segment mean of the 0.5 s annotations" in md
    assert sorted(p.name for p in (out / "plots" / "custom").iterdir()) == [
        "scatter_ridge_arousal.png", "scatter_ridge_valence.png"]
    # a group (the artist) never spans two folds
    f = pd.DataFrame(report["folds"])
    assert (f.groupby("group")["fold"].nunique() == 1).all()
    assert f.groupby("group")["track_id"].nunique().max() == 2  # two songs per artist
    # the report's numbers are scikit-learn's on the same folds
    ds = open_store(pmemo["store"])
    X = _features(ds, f["segment_id"])
    direct = _direct_means(pmemo["root"], pmemo["store"]).loc[f["segment_id"]]
    metrics = report["sets"]["custom"]["results"][0]["metrics"]["segment"]
    for name in ("valence", "arousal"):
        want = _direct_ridge_r2(X, direct[name].to_numpy(), f["group"].to_numpy(),
                                f["fold"].to_numpy())
        np.testing.assert_allclose(metrics[name]["r2"]["folds"], want, rtol=1e-9, atol=1e-12)
    # pitch carries valence, loudness arousal: both are learnt
    assert metrics["valence"]["r2"]["pooled"] > 0.8 and metrics["arousal"]["r2"]["pooled"] > 0.9


def test_shuffled_ratings_stay_at_chance(pmemo):
    ds = open_store(pmemo["store"])
    ds.attrs["dataset"] = f"pmemo:{pmemo['shuffled']}"
    for source in ("static", "dynamic"):
        report = evaluate_votes(ds, target=["valence", "arousal"], n_folds=4,
                                annotations=source, features=list(COLUMNS))
        mean = report["sets"]["custom"]["results"][0]["metrics"]["segment"]["mean"]
        assert mean["r2"] < 0.1, (source, mean)


def test_static_annotations_on_request(pmemo, tmp_path, capsys):
    out = tmp_path / "static"
    assert main(["evaluate", pmemo["store"], "--target", "valence", "--annotations", "static",
                 "--folds", "4", "--out", str(out), "--classifiers", "ridge", "--columns",
                 *COLUMNS]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["annotations"] == {"valence": "the track's static rating"}
    assert report["n_segments"] == 3 * N_PMEMO
    assert "custom: ridge mean R2" in capsys.readouterr().out


# ------------------------------------------------------------------ tags and published splits


def _split_tracks(root: Path, k: int, part: str) -> set[str]:
    """The TRACK_ID column of a published split file."""
    path = root / "data" / "splits" / f"split-{k}" / f"autotagging_moodtheme-{part}.tsv"
    return {line.split("\t")[0] for line in path.read_text().splitlines()[1:] if line}


def test_mtg_tags_on_the_published_splits(mtg, tmp_path, capsys):
    out = tmp_path / "tags"
    assert main(["evaluate", mtg["store"], "--target", "tags", "--folds", "dataset",
                 "--columns", *COLUMNS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("custom: logistic-regression macro ROC-AUC ")
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "multilabel"
    assert report["config"]["tags_from"] == "the tags column of the dataset's catalog"
    assert report["config"]["splits"] == [f"split_{k}" for k in range(5)]
    res = report["sets"]["custom"]
    assert res["tags"] == list(TAGS)
    # each split's training and test tracks are those of its split files
    folds = report["folds"]
    f = pd.DataFrame({"track": folds["track_id"], **folds["splits"]})
    for k in range(5):
        for part in ("train", "validation", "test"):
            assert set(f.loc[f[f"split_{k}"] == part, "track"]) == _split_tracks(mtg["root"], k, part)
    best = res["results"][0]
    seg = best["metrics"]["segment"]
    per_tag = {t["tag"]: t["roc_auc"] for t in seg["per_tag"]}
    assert min(per_tag.values()) > 0.8  # pitch carries happy and sad, loudness film
    md = (out / "report.md").read_text()
    assert "the dataset's 5 published splits" in md and "| split_4 |" in md
    # each split's score is scikit-learn's: fit on its training part (the C the search chose),
    # scored on its test part
    X = _features(open_store(mtg["store"]), folds["segment_id"])
    tags = {r[0]: r[5] for r in mtg["rows"]}
    T = np.array([[t in tags[tr] for t in TAGS] for tr in folds["track_id"]], dtype=int)
    for k in range(5):
        parts = np.asarray(folds["splits"][f"split_{k}"])
        train, test = parts == "train", parts == "test"
        model = Pipeline([("scale", StandardScaler()), ("model", OneVsRestClassifier(
            LogisticRegression(C=best["chosen"][k]["estimator__C"], max_iter=2000)))])
        S = model.fit(X[train], T[train]).predict_proba(X[test])
        want = roc_auc_score(T[test], S, average="macro")
        assert seg["roc_auc_macro"]["folds"][k] == pytest.approx(want, abs=1e-9)


def test_shuffled_tags_stay_at_chance_in_grouped_folds(mtg, tmp_path):
    rows, splits, _ = _mtg_rows_and_splits()
    rng = np.random.default_rng(3)
    order = rng.permutation(len(rows))
    shuffled = [(*r[:5], rows[j][5]) for r, j in zip(rows, order)]
    write_mtg(tmp_path / "shuffled", rows=shuffled, splits=splits)
    ds = open_store(mtg["store"])
    ds.attrs["dataset"] = f"mtg-jamendo:{tmp_path / 'shuffled'}"
    report = evaluate_votes(ds, target="tags", n_folds=5, min_tracks=5, features=list(COLUMNS))
    auc = report["sets"]["custom"]["results"][0]["metrics"]["segment"]["roc_auc_macro"]
    # nothing learnt (the real tags reach 0.9 and more); with 20 tracks the grouped folds of
    # label-free data scatter around and below 0.5, so only the upper side is bounded
    assert auc["mean"] < 0.65, auc
    # grouped by artist: a group never spans two folds
    f = pd.DataFrame(report["folds"])
    assert (f.groupby("group")["fold"].nunique() == 1).all()
    assert set(f["group"]) == {f"artist_{a:06d}" for a in range(10)}


@pytest.mark.slow
def test_train_on_dataset_targets(pmemo, mtg, tmp_path):
    from emodist.models.trained import load_trained

    out = tmp_path / "va"
    assert main(["train", pmemo["store"], "--features", "handcrafted", "--classifier", "ridge",
                 "--target", "valence", "arousal", "--folds", "4", "--out", str(out),
                 "--quiet"]) == 0
    card = load_trained(out).card
    assert card["target"]["columns"] == ["valence", "arousal"]
    assert card["training"]["n_segments"] == 3 * N_PMEMO - N_PMEMO // 2
    out = tmp_path / "tags"
    assert main(["train", mtg["store"], "--features", "handcrafted", "--classifier",
                 "logistic-regression", "--target", "tags", "--min-tracks", "5", "--folds", "2",
                 "--out", str(out), "--quiet"]) == 0
    card = load_trained(out).card
    assert card["target"]["columns"] == list(TAGS) and card["target"]["rule"] == "catalog"


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(("argv", "message"), [
    (["--target", "valance"], ("--target: 'valance' is not a target of this store; it has no "
     "numeric store variable; catalog columns (valence, arousal)")),
    (["--target", "tags"], ("--target: the store keeps no vote profiles to make tags from, and "
     "its catalog has no tags column (")),
    (["--target", "shares"], ("--target: vote shares come from listener votes, and the store keeps "
     "no vote profiles")),
    (["--target", "valence", "--folds", "dataset"], ("--folds: the store's dataset publishes no "
     "splits: its catalog has no split_<k> column")),
    (["--target", "class", "--annotations", "static"], "--annotations is for continuous columns"),
])
def test_refusals_are_one_line(pmemo, argv, message, capsys):
    assert main(["evaluate", pmemo["store"], *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"emodist: error: {message}") and "\n" not in err, err


def test_catalog_columns_need_the_dataset_location(pmemo, mtg, capsys):
    ds = open_store(pmemo["store"])
    ds.attrs["dataset"] = "generated"
    with pytest.raises(EmodistError, match="catalog column: the store names no dataset it was "
                       "read from") as err:
        evaluate_votes(ds, target=["valence"])
    assert err.value.param == "target"
    assert main(["evaluate", mtg["store"], "--target", "valance"]) == 2
    assert "catalog columns (duration_s)" in capsys.readouterr().err


def test_a_dataset_without_dynamic_annotations(pmemo, mtg, tmp_path):
    static, artists, _, _ = _pmemo_annotations()
    write_pmemo(tmp_path / "p", audio_ids=(), stray=(), static=static, artists=artists)
    (tmp_path / "p" / "PMEmo2019" / "annotations" / "dynamic_annotations.csv").unlink()
    ds = open_store(pmemo["store"])
    ds.attrs["dataset"] = f"pmemo:{tmp_path / 'p'}"
    data = load_vote_data(ds)
    got = column_targets(data, ["valence"])  # the default falls back to the static rating
    assert got.sources == {"valence": "the track's static rating"} and got.keep.all()
    with pytest.raises(EmodistError, match="'valence' has no time-stamped annotations: .*"
                       "dynamic_annotations.csv") as err:
        column_targets(data, ["valence"], annotations="dynamic")
    assert err.value.param == "annotations"
    mtg_data = load_vote_data(mtg["store"])
    with pytest.raises(EmodistError, match="'duration_s' has no time-stamped annotations: the "
                       "mtg-jamendo dataset publishes none"):
        column_targets(mtg_data, ["duration_s"], annotations="dynamic")
