"""Output locations are checked before the work; reports appear whole or not at all."""

from __future__ import annotations

import json
import time

import pytest

from emodist.cli import main
from emodist.errors import EmodistError
from emodist.learn.report import write_report
from emodist.store.outputs import check_file, check_folder, staged_folder, write_file
from tests.servers import make_bucket, moto_server
from tests.stores import make_store

EVALUATE = ["--features", "handcrafted", "--classifiers", "linear-svm", "fine-knn", "--folds",
            "2", "--workers", "1", "--quiet", "--ceiling", "none"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("out") / "s.zarr", n_tracks=20, n_segments=2)


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> tuple[dict, float]:
    """A real evaluation written to a new folder; its report and wall time."""
    out = tmp_path_factory.mktemp("rep") / "report"
    t0 = time.perf_counter()
    assert main(["evaluate", store, "--out", str(out), *EVALUATE]) == 0
    seconds = time.perf_counter() - t0
    return json.loads((out / "report.json").read_text()), seconds


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("emodist: error: "), err
    return err


def test_a_file_at_out_is_refused_before_any_fit(store, report, tmp_path, capsys):
    _, full = report
    capsys.readouterr()
    taken = tmp_path / "report"
    taken.write_text("not a folder")
    t0 = time.perf_counter()
    assert main(["evaluate", store, "--out", str(taken), *EVALUATE]) == 2
    refused = time.perf_counter() - t0
    err = one_error(capsys)
    assert err == f"emodist: error: --out: {taken} is a file, not a folder"
    assert refused < full / 3, (refused, full)  # no fit ran
    assert taken.read_text() == "not a folder"
    # under a file, too
    assert main(["evaluate", store, "--out", str(taken / "sub"), *EVALUATE]) == 2
    assert f"{taken} is a file, not a folder" in one_error(capsys)


def test_run_refuses_a_bad_out_before_extracting(tmp_path, capsys):
    taken = tmp_path / "report"
    taken.write_text("x")
    store = tmp_path / "never.zarr"
    assert main(["run", str(tmp_path / "no-such-data"), "--store", str(store), "--out",
                 str(taken), "--features", "handcrafted"]) == 2
    assert f"--out: {taken} is a file" in one_error(capsys)
    assert not store.exists()


def test_query_output_is_checked_before_the_query(store, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["query", store, "--track", "1", "--out", str(folder)]) == 2
    assert f"--out: {folder} is a folder, not a file" in one_error(capsys)
    out = tmp_path / "rows.csv"
    assert main(["query", store, "--label", "calmness", "--out", str(out)]) == 0
    assert out.read_text().startswith("segment_id,")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_extract_store_under_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "file"
    taken.write_text("x")
    assert main(["extract", str(tmp_path), "--store", str(taken / "s.zarr"),
                 "--features", "handcrafted"]) == 2
    assert f"--store: {taken / 's.zarr'}: {taken} is a file, not a folder" in one_error(capsys)


def test_an_interrupted_report_write_leaves_no_half_report(report, tmp_path):
    rep, _ = report
    out = tmp_path / "report"
    broken = dict(rep, unserialisable=object())  # figures and markdown first, then JSON fails
    with pytest.raises(TypeError):
        write_report(broken, out)
    assert not out.exists()
    # over an earlier report: the earlier one stays whole
    write_report(dict(rep), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "report.json" in before and "report.md" in before and len(before) > 3
    with pytest.raises(TypeError):
        write_report(broken, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".emodist-out-")]


def test_staged_folder_publishes_only_on_success(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt), staged_folder(out, last="report.json") as stage:
        (stage / "a.png").write_bytes(b"png")
        raise KeyboardInterrupt
    assert not out.exists()
    with staged_folder(out, last="report.json") as stage:
        (stage / "a.png").write_bytes(b"png")
        (stage / "report.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "report.json"]


def test_check_file_and_folder_name_the_flag(tmp_path):
    with pytest.raises(EmodistError) as e:
        check_file(tmp_path, param="csv")
    assert e.value.param == "csv" and "is a folder" in e.value.message
    check_folder(tmp_path / "new" / "deeper")  # missing folders are made later
    write_file(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"


@pytest.mark.s3
def test_s3_outputs(report, store, capsys):
    rep, _ = report
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "emodist")
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        fs.pipe_file("emodist/reports/taken", b"x")
        so = json.dumps(options)
        capsys.readouterr()
        for url, why in (("s3://emodist/reports/taken", "is an object, not a folder"),
                         ("s3://no-such-bucket/r", "the bucket no-such-bucket does not exist")):
            assert main(["evaluate", store, "--out", url, "--storage-options", so,
                         *EVALUATE]) == 2
            assert f"--out: {url}" in (line := one_error(capsys)) and why in line, line
        url = "s3://emodist/reports/r1"
        with pytest.raises(TypeError):
            write_report(dict(rep, unserialisable=object()), url, options)
        assert not fs.exists("emodist/reports/r1")
        files = write_report(dict(rep), url, options)
        assert files["json"] == f"{url}/report.json"
        assert json.loads(fs.cat_file("emodist/reports/r1/report.json"))["files"] == files
