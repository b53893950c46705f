"""Decoding: soundfile through fsspec, mono down-mix, one soxr resample, segment views."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from emodist.data import audio
from emodist.errors import DataError, EmodistError


def _tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def stereo_wav(tmp_path):
    """2 s stereo WAV at 44.1 kHz: 440 Hz left, 880 Hz right."""
    sr = 44100
    data = np.stack([_tone(440, sr, 2.0), _tone(880, sr, 2.0, 0.25)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, data, sr, subtype="FLOAT")
    return path, data, sr


def test_to_mono_averages_channels():
    y = np.array([[1.0, 0.0], [0.5, -0.5], [0.2, 0.4]], dtype=np.float64)
    out = audio.to_mono(y)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.5, 0.0, 0.3], atol=1e-7)
    np.testing.assert_array_equal(audio.to_mono(np.ones(4)), np.ones(4, dtype=np.float32))
    with pytest.raises(EmodistError):
        audio.to_mono(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("channels", [2, 3, 6, 7, 8, 9])
def test_to_mono_gives_numpy_mean_bit_for_bit(channels):
    """The column sum keeps ndarray.mean's bits, signed zeros and non-finite values included."""
    rng = np.random.default_rng(channels)
    y = rng.standard_normal((5000, channels)).astype(np.float32)
    y[:50] = -0.0
    y[50:60, 0] = np.inf
    y[60:70, 1] = np.nan
    y[70:80] = np.float32(1e-45) * rng.choice([-1, 1], size=(10, channels))
    y[80:90] = np.float32(3e38)
    want = y.mean(axis=1)
    got = audio.to_mono(y)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_local_files_decode_as_through_a_file_object(tmp_path, stereo_wav):
    """A local file (read by libsndfile from its descriptor) gives what fsspec's file object gives."""
    import fsspec

    path = stereo_wav[0]
    mp3 = tmp_path / "tone.mp3"
    sf.write(mp3, stereo_wav[1], stereo_wav[2], format="MP3")
    memory = fsspec.filesystem("memory")
    for p in (path, mp3):
        memory.pipe(f"/decode/{p.name}", p.read_bytes())
        local = audio.load_track(str(p), 22050)
        through_object = audio.load_track(f"memory://decode/{p.name}", 22050)
        np.testing.assert_array_equal(local, through_object)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt " + bytes(64))
    with pytest.raises(DataError) as err:
        audio.load_track(str(corrupt), 22050)
    assert str(err.value).startswith(f"{corrupt}: damaged or truncated WAV file (")
    assert "Error opening" not in str(err.value) and "<" not in str(err.value)


def test_resample_length_and_identity():
    y = _tone(440, 48000, 1.0)
    out = audio.resample(y, 48000, 22050)
    assert out.dtype == np.float32 and out.shape == (22050,)
    np.testing.assert_array_equal(audio.resample(y, 48000, 48000), y)


def test_load_track_stereo_matches_librosa_load(stereo_wav):
    import librosa

    path = stereo_wav[0]
    y = audio.load_track(str(path), 22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.shape[0] - 2 * 22050) <= 1
    ref, _ = librosa.load(path, sr=22050, mono=True, res_type="soxr_hq")
    np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.parametrize("native", [8000, 48000])
def test_load_track_resamples_other_rates(tmp_path, native):
    path = tmp_path / f"tone_{native}.wav"
    sf.write(path, _tone(300, native, 1.0), native)
    y = audio.load_track(str(path), 22050)
    assert abs(y.shape[0] - 22050) <= 1
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * 22050 / y.shape[0]
    assert abs(peak_hz - 300) < 2


def test_load_track_offset_and_duration(stereo_wav):
    path, sr = stereo_wav[0], stereo_wav[2]
    full = audio.load_track(str(path), sr)
    part = audio.load_track(str(path), sr, offset_s=0.5, duration_s=1.0)
    assert part.shape == (sr,)
    np.testing.assert_allclose(part, full[sr // 2 : sr // 2 + sr], atol=1e-6)


def test_load_track_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(DataError, match="missing.wav"):
        audio.load_track(str(missing), 22050)

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.wav"):
        audio.load_track(str(empty), 22050)

    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="corrupt.mp3"):
        audio.load_track(str(corrupt), 22050)

    silent_header = tmp_path / "noframes.wav"
    sf.write(silent_header, np.zeros((0, 1), dtype=np.float32), 22050)
    with pytest.raises(DataError, match="noframes.wav"):
        audio.load_track(str(silent_header), 22050)


def test_load_track_rejects_bad_arguments(stereo_wav):
    path, _, _ = stereo_wav
    with pytest.raises(EmodistError, match="sample rate"):
        audio.load_track(str(path), 0)
    with pytest.raises(EmodistError):
        audio.load_track(str(path), 22050, offset_s=-1.0)
    with pytest.raises(DataError, match="past the end"):
        audio.load_track(str(path), 22050, offset_s=10.0)


def test_cut_is_a_view_with_rounded_bounds():
    sr = 1000
    y = np.arange(5000, dtype=np.float32)
    seg = audio.cut(y, sr, 1.0, 2.0)
    assert np.shares_memory(seg, y)
    np.testing.assert_array_equal(seg, y[1000:3000])
    tail = audio.cut(y, sr, 4.5, 2.0)
    assert tail.shape == (500,)
    with pytest.raises(DataError, match="after the end"):
        audio.cut(y, sr, 5.0, 1.0)
    with pytest.raises(EmodistError):
        audio.cut(y, sr, -1.0, 1.0)
    with pytest.raises(EmodistError):
        audio.cut(y, sr, 0.0, 0.0)


def test_load_track_real_emotify_mp3(emotify_root):
    path = emotify_root / "emotifymusic" / "rock" / "1.mp3"
    y = audio.load_track(str(path), 22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert 55 * 22050 < y.shape[0] < 65 * 22050
    assert 0.01 < float(np.sqrt(np.mean(y**2))) < 1.0
    seg = audio.cut(y, 22050, 15.0, 15.0)
    assert seg.shape == (15 * 22050,)


@pytest.mark.s3
def test_load_track_from_s3_moto(stereo_wav):
    pytest.importorskip("s3fs")
    import boto3
    import s3fs

    from tests.servers import S3_KEY, S3_REGION, S3_SECRET, moto_server

    path, _, _ = stereo_wav
    local = audio.load_track(str(path), 22050)
    with moto_server() as (endpoint, options):
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY,
                     aws_secret_access_key=S3_SECRET,
                     region_name=S3_REGION).create_bucket(Bucket="audio-bucket")
        fs = s3fs.S3FileSystem(**options)
        fs.put(str(path), "audio-bucket/tracks/stereo.wav")
        remote = audio.load_track("s3://audio-bucket/tracks/stereo.wav", 22050,
                                  storage_options=options)
        np.testing.assert_array_equal(remote, local)
        with pytest.raises(DataError, match="s3://audio-bucket/tracks/nothere.wav"):
            audio.load_track("s3://audio-bucket/tracks/nothere.wav", 22050,
                             storage_options=options)


@pytest.mark.s3
@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "MP3"])
def test_remote_header_reads_two_blocks_fetched_before_libsndfile_opens(tmp_path, fmt):
    """Probing a 60 s file on S3 fetches its first and last block, not the file,
    and libsndfile's open (under soundfile's process-wide lock) fetches nothing;
    a decode's open fetches nothing either: its first block came before it.
    A read past both blocks fetches a block from there."""
    pytest.importorskip("s3fs")
    import s3fs

    from emodist.data.segments import probe
    from tests.servers import S3Requests, make_bucket, moto_server

    path = tmp_path / f"long.{fmt.lower()}"
    _long_file(path, 60.0, sr=44100, channels=2, format=fmt)
    size = path.stat().st_size
    assert size > 8 * audio.HEADER_BLOCK
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio-bucket")
        url = f"s3://audio-bucket/{path.name}"
        s3fs.S3FileSystem(**options).put(str(path), url)
        with S3Requests() as calls:
            assert probe(url, options) == probe(str(path))
        assert sorted(calls.gets) == [(0, audio.HEADER_BLOCK), (size - audio.HEADER_BLOCK, size)]
        for header_only in (True, False):
            with audio._audio_file(url, options, header_only=header_only) as f:
                with S3Requests() as calls, sf.SoundFile(f) as snd:
                    assert snd.samplerate == 44100
                assert calls.gets == []
        with audio._audio_file(url, options, header_only=True) as f, S3Requests() as calls:
            whole, mid = path.read_bytes(), size // 2
            f.seek(mid)
            assert f.read(10) == whole[mid:mid + 10]
            f.seek(100, os.SEEK_CUR)
            assert f.read(1000) == whole[mid + 110:mid + 1110] and f.tell() == mid + 1110
            f.seek(-3, os.SEEK_END)
            assert f.read(10) == whole[-3:] and f.tell() == size
        # one block from the first miss on; the read close after it is in it
        assert calls.gets == [(mid, mid + audio.HEADER_BLOCK)]


def _id3v2(body_size: int, *, footer: bool = False) -> bytes:
    """An ID3v2.3 tag of one APIC (cover art) frame whose picture is ``body_size`` bytes."""
    import struct

    body = b"\x00image/jpeg\x00\x03\x00" + np.random.default_rng(1).bytes(body_size)
    frame = b"APIC" + struct.pack(">I", len(body)) + b"\x00\x00" + body
    n = len(frame)
    size = bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])
    tag = b"ID3\x03\x00" + (b"\x10" if footer else b"\x00") + size + frame
    return tag + (b"3DI\x03\x00\x10" + size if footer else b"")


def test_id3v2_end_reads_the_tag_header():
    tag = _id3v2(1000)
    assert audio.id3v2_end(tag + b"\xff\xfb") == len(tag)
    with_footer = _id3v2(1000, footer=True)
    assert audio.id3v2_end(with_footer) == len(with_footer)
    assert audio.id3v2_end(b"RIFF\x00\x00\x00\x00WAVE") == 0
    assert audio.id3v2_end(b"ID3\x03\x00\x00\x80\x00\x00\x00") == 0  # not 7-bit bytes
    assert audio.id3v2_end(b"ID3") == 0


@pytest.mark.s3
def test_remote_header_of_an_mp3_with_cover_art_is_fetched_before_the_open(tmp_path):
    """A 300 KB ID3v2 tag: libsndfile reads all of it, so it is fetched with the
    first block's reply, before the open; the open fetches nothing."""
    pytest.importorskip("s3fs")
    import s3fs

    from emodist.data.segments import probe
    from tests.servers import S3Requests, make_bucket, moto_server

    plain = tmp_path / "plain.mp3"
    _long_file(plain, 60.0, sr=44100, channels=2, format="MP3")
    tag = _id3v2(300_000)
    path = tmp_path / "art.mp3"
    path.write_bytes(tag + plain.read_bytes())
    size, block = path.stat().st_size, audio.HEADER_BLOCK
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, "audio-bucket")
        url = "s3://audio-bucket/art.mp3"
        s3fs.S3FileSystem(**options).put(str(path), url)
        with S3Requests() as calls:
            assert probe(url, options) == probe(str(path)) == probe(str(plain))
        assert sorted(calls.gets) == [(0, block), (block, len(tag) + block),
                                   (size - block, size)]
        with audio._audio_file(url, options, header_only=True) as f:
            with S3Requests() as calls, sf.SoundFile(f) as snd:
                assert snd.channels == 2
            assert calls.gets == []


# ------------------------------------------------------ windows of long files


def _long_file(path, seconds: float, sr: int = 44100, channels: int = 2, **kw) -> None:
    """A noisy tone written block by block (the test's memory stays small)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=channels, **kw) as f:
        for start in range(0, int(seconds), 60):
            n = int(min(60, seconds - start) * sr)
            t = (start * sr + np.arange(n)) / sr
            y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
            f.write(np.repeat(y[:, None], channels, axis=1).astype(np.float32))


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_window_far_into_a_file_equals_a_full_decode(tmp_path, fmt):
    """WAV/FLAC seek exactly, MP3 decodes from the start and drops the frames: equal values.

    The reference is the whole file decoded from its start as one array and
    resampled once per rate: the window (which reads ``TAIL_S`` past the end a
    chunk needs) must give the same samples, up to the segment's last one.
    """
    path = tmp_path / f"long.{fmt}"
    _long_file(path, 160.0, format=fmt.upper())
    mono, native = audio._read(str(path), None, 0.0, None)
    full = {r: audio.resample(mono, native, r) for r in (22050, 16000, 44100)}
    part = audio.decode(str(path), rates=[22050, 16000, 44100], end_s=155.0)
    assert isinstance(part[22050], audio.WindowedTrack)
    for rate in (22050, 16000, 44100):
        got = audio.cut(part[rate], rate, 140.0, 15.0)
        want = audio.cut(full[rate], rate, 140.0, 15.0)
        assert got.shape == want.shape == (15 * rate,)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # only the window was decoded: one pre-roll second before the first segment cut
    assert part[22050].window.arrays[22050].shape[0] == pytest.approx(
        (16 + audio.TAIL_S) * 22050, abs=50)
    # a cut before the window decodes again from there, with the same values
    np.testing.assert_allclose(audio.cut(part[22050], 22050, 125.0, 4.0),
                               audio.cut(full[22050], 22050, 125.0, 4.0), atol=1e-6)
    with pytest.raises(DataError, match="starts after the end"):
        audio.cut(part[22050], 22050, 155.0 + audio.TAIL_S, 1.0)


@pytest.mark.cluster
def test_one_hour_track_extracts_in_bounded_worker_memory(tmp_path):
    """A one-hour stereo 44.1 kHz WAV: a real `dask worker` peaks below 1.5 GiB.

    A decode of the file's first 50 minutes as one float32 array would take
    1.06 GiB at native width before the mono mix; six 15 s segments spread
    over the hour (hop 10 min, two per chunk) keep the run short.
    """
    from emodist.engine.extract import run_extract
    from emodist.features import make_groups
    from emodist.spec import ExtractionSpec, Runtime
    from tests.servers import dask_cluster

    wav = tmp_path / "hour.wav"
    _long_file(wav, 3600.0, subtype="PCM_16")
    (tmp_path / "manifest.csv").write_text("path,label\nhour.wav,calmness\n")
    spec = ExtractionSpec(groups=make_groups(["handcrafted"]), segment_seconds=15.0,
                          hop_seconds=600.0)
    with dask_cluster(n_workers=1, nthreads=1, memory_limit="4GiB") as (address, _):
        result = run_extract(str(tmp_path / "manifest.csv"), str(tmp_path / "s.zarr"), spec,
                             Runtime(scheduler=address, chunk=2, progress=False))
        from distributed import Client

        with Client(address) as c:
            def peak_rss_kib():
                import resource

                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

            peaks = list(c.run(peak_rss_kib).values())
    assert result.n_segments == 6 and result.n_done == 6
    assert len(peaks) == 1 and peaks[0] * 1024 < 1.5 * 2**30, peaks
