"""Folds grouped by a named track column, and a dataset's published splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emodist.cli import main
from emodist.errors import EmodistError
from emodist.learn.evaluate import run_evaluate
from emodist.learn.folds import TRAIN_ONLY, one_group_per_copy, split_folds
from emodist.learn.spec import EvaluationSpec
from emodist.learn.tracks import column_values, published_splits
from emodist.store import open_store
from tests.stores import build, make_arrays, make_store, write

N_TRACKS = 40
PARTS = np.array(["train", "validation", "test"])


def _catalogued(tmp, *, splits: int = 3, audio: bool = False, copies_grouped: bool = False):
    """A store whose ``dataset`` attribute names a manifest with ``album`` and ``split_k`` columns.

    ``album``: four tracks each (every class in each album); ``split_k``: whole
    albums drawn into train, validation or test per split.  With ``audio``, the
    store's paths are real files, track 5 a byte-identical copy of track 0
    (``copies_grouped``: in track 0's group, as extraction stores copies).
    """
    arrays = make_arrays(n_tracks=N_TRACKS, n_segments=3, separation=2.5, seed=1)
    rng = np.random.default_rng(7)
    tracks = np.arange(N_TRACKS)
    table = pd.DataFrame({"track_id": tracks.astype(str), "path": [f"{t}.mp3" for t in tracks],
                          "label": "x", "album": [f"album-{t // 4}" for t in tracks]})
    for k in range(splits):
        per_album = PARTS[rng.permutation(np.arange(N_TRACKS // 4) % 3)]
        table[f"split_{k}"] = per_album[tracks // 4]
    manifest = tmp / "manifest.csv"
    table.to_csv(manifest, index=False)
    if audio:
        folder = tmp / "audio"
        folder.mkdir()
        for t in tracks:
            (folder / f"{t}.mp3").write_bytes(f"recording {0 if t == 5 else t}".encode())
        arrays["plan"]["path"] = [str(folder / f"{t}.mp3") for t in arrays["plan"]["track_id"]]
        if copies_grouped:
            arrays["plan"].loc[arrays["plan"]["track_id"] == "5", "group"] = "0"
    ds = build(arrays, attrs={"dataset": f"manifest:{manifest}"})
    return write(ds, tmp / "store.zarr"), table, arrays


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory):
    return _catalogued(tmp_path_factory.mktemp("splits"))


def _segment_folds(report) -> pd.DataFrame:
    f = report["folds"]
    return pd.DataFrame({"track_id": f["track_id"], "fold": f["fold"]})


def test_group_by_album_keeps_every_album_in_one_fold(catalogued):
    store, table, _ = catalogued
    report = run_evaluate(store, features="handcrafted", classifiers=["fine-knn"], folds=5,
                          n_jobs=1, ceiling=False, group_by="album")
    folds = _segment_folds(report)
    folds["album"] = folds["track_id"].map(table.set_index("track_id")["album"])
    assert folds.groupby("album")["fold"].nunique().max() == 1
    assert folds["fold"].nunique() == 5
    assert report["data"]["n_groups"] == N_TRACKS // 4
    assert report["settings"]["group_by"] == "album"
    assert report["evaluation_spec"]["group_by"] == "album"
    assert "grouped by album" in report["settings"]["cv"]


def test_group_by_a_store_column(catalogued):
    store, _, arrays = catalogued
    report = run_evaluate(store, features="handcrafted", classifiers=["fine-knn"], folds=4,
                          n_jobs=1, ceiling=False, group_by="genre")
    plan = arrays["plan"].set_index("segment_id")
    genre = plan.loc[report["folds"]["segment_id"], "genre"].to_numpy()
    spread = pd.DataFrame({"genre": genre, "fold": report["folds"]["fold"]})
    assert spread.groupby("genre")["fold"].nunique().max() == 1
    assert spread["fold"].nunique() == 4


def test_default_grouping_is_unchanged(catalogued):
    store, _, _ = catalogued
    kw = {"features": "handcrafted", "classifiers": ["fine-knn"], "n_jobs": 1, "ceiling": False}
    assert (run_evaluate(store, **kw)["folds"]["fold"]
            == run_evaluate(store, group_by="group", **kw)["folds"]["fold"])


def test_column_values_reads_store_then_catalog(catalogued):
    store, _, _ = catalogued
    ds = open_store(store)
    ids = ["3", "17", "3"]
    assert column_values(ds, "album", ids).tolist() == ["album-0", "album-4", "album-0"]
    assert column_values(ds, "genre", ids).tolist() == ["pop", "rock", "pop"]
    with pytest.raises(EmodistError, match=r"'artist' is not a column .*album") as err:
        column_values(ds, "artist", ids)
    assert err.value.param == "group_by"


def test_copies_share_a_group_whatever_the_column():
    groups = np.array(["a", "a", "b", "c", "c", "d"], dtype=object)
    tracks = np.array(["1", "1", "2", "3", "3", "4"], dtype=object)
    merged = one_group_per_copy(groups, tracks, [["3", "1"], ["4", "2"]])
    assert merged.tolist() == ["c", "c", "d", "c", "c", "d"]
    assert one_group_per_copy(groups, tracks, [["1", "9"]]).tolist() == groups.tolist()


@pytest.mark.parametrize("copies_grouped", [False, True])
def test_cli_group_by_keeps_copies_in_one_fold(tmp_path, copies_grouped):
    store, table, _ = _catalogued(tmp_path, audio=True, copies_grouped=copies_grouped)
    out = tmp_path / "rep"
    assert main(["evaluate", store, "--features", "handcrafted", "--classifiers", "fine-knn",
                 "--group-by", "album", "--workers", "1", "--ceiling", "none", "--quiet",
                 "--out", str(out)]) == 0
    folds = _segment_folds(json.loads((out / "report.json").read_text()))
    per_track = folds.groupby("track_id")["fold"].first()
    assert table.loc[0, "album"] != table.loc[5, "album"]
    assert per_track["0"] == per_track["5"]  # byte-identical audio: one recording
    folds["album"] = folds["track_id"].map(table.set_index("track_id")["album"])
    assert folds.groupby("album")["fold"].nunique().max() == 1
    assert folds.loc[folds["album"].isin(["album-0", "album-1"]), "fold"].nunique() == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--group-by", "artist"], "--group-by: 'artist' is not a column of the store's tracks"),
    (["--group-by", "album", "--folds", "dataset"],
     "--group-by: not with the dataset's published splits"),
])
def test_cli_errors_are_one_line(catalogued, argv, message, capsys):
    store, _, _ = catalogued
    code = main(["evaluate", store, "--features", "handcrafted", "--classifiers", "fine-knn",
                 "--workers", "1", "--quiet", *argv])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_vote_shares_on_the_published_splits(catalogued, tmp_path, capsys):
    """Vote targets on a dataset that publishes splits: each split fit on its training part."""
    store, table, _ = catalogued
    out = tmp_path / "shares"
    assert main(["evaluate", store, "--features", "handcrafted", "--target", "shares",
                 "--classifiers", "ridge", "--folds", "dataset", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("handcrafted: ridge mean R2 ")
    report = json.loads((out / "report.json").read_text())
    parts = table.set_index("track_id")
    assert report["config"]["splits"] == ["split_0", "split_1", "split_2"]
    for name, values in report["folds"]["splits"].items():
        assert values == parts.loc[report["folds"]["track_id"], name].tolist()
    r2 = report["sets"]["handcrafted"]["results"][0]["metrics"]["segment"]["calmness"]["r2"]
    assert len(r2["folds"]) == 3
    assert "| split_2 |" in (out / "report.md").read_text()


def test_folds_takes_a_number_or_dataset(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "s.zarr", "--folds", "some"])
    assert e.value.code == 2
    assert "--folds: give a number of folds or 'dataset', got 'some'" in capsys.readouterr().err


def test_a_store_without_a_dataset_says_why(tmp_path, capsys):
    store = make_store(tmp_path / "s.zarr", n_tracks=12, n_segments=2)
    assert main(["evaluate", store, "--features", "handcrafted", "--classifiers", "fine-knn",
                 "--folds", "dataset", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emodist: error: --folds: the store's dataset publishes no splits: "
                          "the store names no dataset")
    assert main(["evaluate", store, "--group-by", "album", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--group-by: 'album' is not a column" in err and "names no dataset" in err


def test_split_folds_trains_on_train_and_tests_test():
    rows, fold = split_folds(["train", "test", "validation", "", "train", "test"])
    assert rows.tolist() == [True, True, False, False, True, True]
    assert fold.tolist() == [TRAIN_ONLY, 0, TRAIN_ONLY, 0]


def test_published_splits_scores_equal_a_direct_fit(catalogued):
    """Each split: fit on its train part only, score its test part; mean and std over splits."""
    store, table, arrays = catalogued
    report = run_evaluate(store, features="handcrafted", classifiers=["fine-knn"], n_jobs=1,
                          ceiling=False, fold_source="dataset")
    assert report["settings"]["folds"] == 3 and "published splits" in report["settings"]["cv"]
    assert report["evaluation_spec"]["fold_source"] == "dataset"
    plan = arrays["plan"]
    X, y = arrays["handcrafted"].astype(np.float64), plan["label"].to_numpy()
    expected, n_tested = [], 0
    for k in range(3):
        part = plan["track_id"].map(table.set_index("track_id")[f"split_{k}"]).to_numpy()
        train, test = part == "train", part == "test"
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1))
        expected.append(accuracy_score(y[test], model.fit(X[train], y[train]).predict(X[test])))
        n_tested += int(test.sum())
    got = report["results"][0]["segment"]["accuracy"]
    assert got["folds"] == pytest.approx(expected)
    assert got["mean"] == pytest.approx(np.mean(expected))
    assert got["std"] == pytest.approx(np.std(expected))
    assert len(report["tested"]["split"]) == n_tested == report["results"][0]["segment"]["n"]
    assert set(report["folds"]["splits"]) == {"split_0", "split_1", "split_2"}


def test_cli_published_splits_writes_the_report(catalogued, tmp_path, capsys):
    store, _, _ = catalogued
    out = tmp_path / "rep"
    assert main(["evaluate", store, "--features", "handcrafted", "--classifiers", "fine-knn",
                 "--folds", "dataset", "--workers", "1", "--ceiling", "none", "--quiet",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["folds"] == 3 and "fold" not in report["folds"]
    assert len(report["results"][0]["predictions"]) == len(report["tested"]["segment_id"])
    assert "- evaluation: the dataset's 3 published splits" in (out / "report.md").read_text()
    assert "Fine KNN" in capsys.readouterr().out


def _mtg_folder(root, track_ids, parts):
    """An MTG-Jamendo mood/theme folder in the published layout (no audio)."""
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
    rows = [f"{t}\tartist_{i // 4:06d}\talbum_{i // 2:06d}\t{i % 100:02d}/{i}.mp3\t30.0\t"
            f"mood/theme---happy\tmood/theme---film\n" for i, t in enumerate(track_ids)]
    (root / "data").mkdir(parents=True)
    (root / "data" / "autotagging_moodtheme.tsv").write_text(header + "".join(rows))
    for k in range(parts.shape[1]):
        folder = root / "data" / "splits" / f"split-{k}"
        folder.mkdir(parents=True)
        for name in PARTS:
            keep = [r for r, p in zip(rows, parts[:, k]) if p == name]
            (folder / f"autotagging_moodtheme-{name}.tsv").write_text(header + "".join(keep))


def test_mtg_jamendo_publishes_five_splits(tmp_path):
    arrays = make_arrays(n_tracks=20, n_segments=2, seed=2)
    ids = [f"track_{int(t):07d}" for t in arrays["plan"]["track_id"]]
    arrays["plan"]["track_id"] = ids
    unique = list(dict.fromkeys(ids))
    rng = np.random.default_rng(0)
    parts = PARTS[rng.integers(0, 3, size=(len(unique), 5))]
    parts[0, :] = ""  # a track the splits leave out
    parts[1, :] = "test"
    _mtg_folder(tmp_path / "mtg", unique, parts)
    ds = build(arrays, attrs={"dataset": f"mtg-jamendo:{tmp_path / 'mtg'}"})
    splits = published_splits(ds, ids)
    assert splits.names == tuple(f"split_{k}" for k in range(5))
    index = {t: i for i, t in enumerate(unique)}
    assert (splits.parts == parts[[index[t] for t in ids]]).all()
    assert column_values(ds, "album", ids[:4]).tolist() == ["album_000000"] * 4


@pytest.mark.parametrize(("kw", "param", "message"), [
    ({"fold_source": "dataset", "group_by": "album"}, "group_by", "published splits"),
    ({"fold_source": "dataset", "target": "distribution"}, "target", "one class per segment"),
    ({"fold_source": "folds"}, "fold_source", "unknown fold source 'folds'"),
    ({"group_by": ""}, "group_by", "give a column name"),
    ({"stream": True, "group_by": "album"}, "group_by", "streamed"),
])
def test_spec_refuses_what_the_folds_cannot_do(kw, param, message):
    with pytest.raises(EmodistError, match=message) as err:
        EvaluationSpec(**kw)
    assert err.value.param == param


def test_spec_records_the_fold_settings():
    spec = EvaluationSpec(classifiers="quick", group_by="album")
    assert spec.to_dict()["group_by"] == "album" and spec.to_dict()["fold_source"] == "grouped"
    assert EvaluationSpec.from_dict(spec.to_dict()) == spec
    old = {k: v for k, v in spec.to_dict().items() if k not in ("group_by", "fold_source")}
    assert EvaluationSpec.from_dict(old).group_by is None  # a report of an earlier version
