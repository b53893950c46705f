"""Readers refuse a damaged store in one line that points to ``emodist verify``.

A real store (the handcrafted group of a small generated dataset) is damaged
on disk the way a crash or a bad copy does: a status chunk cut short, a
coordinate chunk deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emodist.cli import main
from emodist.engine.extract import run_extract
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from emodist.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("damage")
    make_demo_dataset(root / "dataset", n_tracks=4, seed=3, duration_s=12.0)
    url = root / "s.zarr"
    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=4.0)
    run_extract(str(root / "dataset"), str(url), spec,
                Runtime(progress=False, chunk=2, n_workers=1, threads_per_worker=1))
    return url


def damaged_copy(store: Path, tmp_path: Path, how: str) -> Path:
    url = tmp_path / "damaged.zarr"
    shutil.copytree(store, url)
    if how == "status":
        chunk = sorted((url / "handcrafted_status" / "c").iterdir())[1]
        chunk.write_bytes(chunk.read_bytes()[:5])
    elif how == "segment":
        shutil.rmtree(url / "segment" / "c")
    elif how == "track_id":
        shutil.rmtree(url / "track_id" / "c")
    return url


@pytest.mark.parametrize("how", ["status", "segment", "track_id"])
@pytest.mark.parametrize("command", [["info"], ["query", "--track", "1"],
                                     ["query", "--label", "calmness"]])
def test_readers_refuse_a_damaged_store(store, tmp_path, capsys, how, command):
    url = damaged_copy(store, tmp_path, how)
    argv = [command[0], str(url), *command[1:]]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"emodist: error: {url}: damaged store: ")
    assert f"emodist verify {url}" in lines[0]
    assert out == ""


def test_an_intact_store_is_read(store, capsys):
    assert main(["info", str(store)]) == 0
    assert "12 done" in capsys.readouterr().out
