"""Bad inputs give one clear line each, and the rest of the batch completes.

The audio is generated with soundfile and numpy: valid WAV/FLAC/OGG files at
8-96 kHz, 8/16/24-bit, mono to 6 channels must extract with finite values;
an empty file, a text file named ``.mp3``, a truncated MP3 and a zero-length
track each give one line naming the file once, with no Python object repr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emodist.cli import main
from emodist.engine.extract import run_extract
from emodist.errors import StoreError
from emodist.features import make_groups
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import open_store

#: (file name, samplerate, subtype, channels, format) of the valid files.
VALID = [
    ("r8k_u8_mono.wav", 8000, "PCM_U8", 1, "WAV"),
    ("r16k_16_stereo.wav", 16000, "PCM_16", 2, "WAV"),
    ("r44k_24_6ch.wav", 44100, "PCM_24", 6, "WAV"),
    ("r96k_24_stereo.flac", 96000, "PCM_24", 2, "FLAC"),
    ("r22k_16_mono.flac", 22050, "PCM_16", 1, "FLAC"),
    ("r48k_ogg_stereo.ogg", 48000, "VORBIS", 2, "OGG"),
    ("r32k_16_6ch.flac", 32000, "PCM_16", 6, "FLAC"),
]
SECONDS = 2.5


def _write(path: Path, sr: int, subtype: str, channels: int, fmt: str) -> None:
    t = np.arange(int(SECONDS * sr)) / sr
    y = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], 1)
    sf.write(path, y.astype(np.float32), sr, subtype=subtype, format=fmt)


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad") / "données"  # a non-ASCII folder
    root.mkdir()
    rows = []
    for name, sr, subtype, ch, fmt in VALID:
        _write(root / name, sr, subtype, ch, fmt)
        rows.append(name)
    (root / "empty.mp3").write_bytes(b"")
    (root / "text.mp3").write_text("this is not audio\n" * 50)
    good = root / "good.mp3"
    _write(good, 44100, "MPEG_LAYER_III", 2, "MP3")
    (root / "truncated.mp3").write_bytes(good.read_bytes()[:600])
    sf.write(root / "zero.wav", np.zeros((0, 1), np.float32), 22050)
    rows += ["empty.mp3", "text.mp3", "truncated.mp3", "zero.wav", "good.mp3", "absent.wav"]
    (root / "manifest.csv").write_text(
        "path,label\n" + "".join(f"{r},calmness\n" for r in rows))
    return root


BAD = ("empty.mp3", "text.mp3", "truncated.mp3", "zero.wav")


def test_batch_of_bad_and_odd_files(batch, tmp_path):
    from distributed import Client, LocalCluster

    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=2.0)
    url = str(tmp_path / "s.zarr")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        result = run_extract(str(batch / "manifest.csv"), url, spec,
                             Runtime(client=client, progress=False, chunk=2))
    ds = open_store(url)
    done = {Path(p).name for p in ds["path"].values[ds["handcrafted_status"].values == 1]}
    assert done == {name for name, *_ in VALID} | {"good.mp3"}
    ok = ds["handcrafted_status"].values == 1
    assert np.isfinite(ds["handcrafted"].values[ok]).all()
    failed = {Path(f["path"]).name: f["error"] for f in result.failures}
    assert set(failed) == set(BAD)
    # a manifest row pointing nowhere is left out of the plan (``emodist catalog`` lists it)
    assert "absent.wav" not in {Path(p).name for p in ds["path"].values}
    for name, message in failed.items():
        assert len(message.splitlines()) == 1 and " at 0x" not in message, message
        assert message.count(name) == 1, message  # names the file once
        assert "données" in message  # the non-ASCII path is written as it is


def test_store_path_that_is_a_file(batch, tmp_path, capsys):
    target = tmp_path / "store.zarr"
    target.write_text("not a store")
    with pytest.raises(StoreError, match=r"store\.zarr is a file, not a store folder") as err:
        run_extract(str(batch / "manifest.csv"), str(target),
                    ExtractionSpec(groups=make_groups(["handcrafted"])), Runtime(progress=False))
    assert err.value.param == "store"
    assert main(["extract", str(batch / "manifest.csv"), "--store", str(target),
                 "--features", "handcrafted", "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"emodist: error: --store: {target} is a file, not a store folder"]


def test_verify_of_something_that_is_not_a_store(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    assert main(["verify", str(tmp_path / "plain")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"emodist: error: {tmp_path / 'plain'}: not a feature store"]
