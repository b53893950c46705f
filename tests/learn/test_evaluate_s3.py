"""``emodist evaluate`` reads a store from S3 (a real moto server) and reports its URL."""

from __future__ import annotations

import json

import pytest

from emodist.cli import main
from tests.servers import make_bucket, moto_server
from tests.stores import build, make_arrays

pytestmark = pytest.mark.s3


def test_evaluate_a_store_on_s3(tmp_path, capsys):
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "features")
        url = "s3://features/run1/store.zarr"
        build(make_arrays(n_tracks=12, n_segments=2), deep=False).to_zarr(
            url, storage_options=options, zarr_format=3, consolidated=True, mode="w")
        code = main(["evaluate", url, "--storage-options", json.dumps(options), "--classifiers",
                     "linear-svm", "--folds", "3", "--workers", "1", "--out", str(tmp_path)])
        assert code == 0
    text = (tmp_path / "report.json").read_text()
    report = json.loads(text)
    assert report["store"]["url"] == url
    assert report["data"]["n_segments"] == 24
    assert options["secret"] not in text  # credentials never reach the report
    assert "Linear SVM" in capsys.readouterr().out


def test_report_written_to_s3(capsys):
    """`--out s3://...`: report.json, report.md and the figures land in the bucket."""
    import s3fs

    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "features")
        make_bucket(endpoint, "reports")
        url = "s3://features/run2/store.zarr"
        build(make_arrays(n_tracks=12, n_segments=2), deep=False).to_zarr(
            url, storage_options=options, zarr_format=3, consolidated=True, mode="w")
        code = main(["evaluate", url, "--storage-options", json.dumps(options), "--classifiers",
                     "linear-svm", "--folds", "3", "--workers", "1", "--out", "s3://reports/r1/"])
        assert code == 0, capsys.readouterr().err
        fs = s3fs.S3FileSystem(**options)
        names = {p.rsplit("/", 1)[1] for p in fs.ls("reports/r1")}
        assert {"report.json", "report.md", "classifiers.png"} <= names
        assert any(n.startswith("confusion_") and n.endswith(".png") for n in names)
        report = json.loads(fs.cat_file("reports/r1/report.json"))
        assert report["files"]["json"] == "s3://reports/r1/report.json"
        assert report["data"]["n_segments"] == 24
        assert b"Linear SVM" in fs.cat_file("reports/r1/report.md")
        # a bucket that does not exist: one line naming it, exit 2
        code = main(["evaluate", url, "--storage-options", json.dumps(options), "--classifiers",
                     "linear-svm", "--folds", "3", "--workers", "1", "--out", "s3://nobucket/r/"])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("emodist: error:")]
        assert code == 2 and len(errors) == 1 and "--out: s3://nobucket/r" in errors[0]
        assert "Traceback" not in err
