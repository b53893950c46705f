"""Handcrafted features: emodist's one-STFT extractor against a naive librosa loop.

On the same segments (15 s pieces of real Emotify tracks when
``EMODIST_EMOTIFY_ROOT`` is set, generated music-like audio otherwise):

(a) the naive researcher's loop: every segment decoded with ``librosa.load``
    (offset/duration), then librosa's feature functions called one by one on
    the samples, each computing its own STFT / mel spectrogram / onset
    envelope: rms, zero_crossing_rate, spectral_centroid, spectral_bandwidth,
    spectral_flatness, spectral_rolloff (85 %, 95 %), mfcc + delta,
    chroma_stft, tonnetz (from that chroma), onset_detect and tempo;
(b) emodist: each track decoded once (:func:`emodist.data.audio.load_track`) and
    cut into views, then :func:`emodist.features.spectral.analyse` +
    :func:`emodist.features.handcrafted.extract` (the full set, 131 columns, which
    includes everything (a) computes and more).

Decode and feature milliseconds per segment are reported separately, with
the speed ratio (target >= 5x), the largest difference between the values
both compute as a fraction of the tests' tolerance (must stay <= 1), the tempo
agreement, and the cold start of a fresh worker process (imports, numba
caches, filterbanks).  BLAS is limited to one thread for both sides, as in a
one-thread Dask worker.  Times are CPU seconds of this process
(:func:`time.process_time`), which a shared, loaded machine distorts far less
than wall-clock time; the wall-clock ratio is reported as well.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, row

SR = 22050
clock = time.process_time
SEGMENT_S = 15.0
#: Tolerances the tests use for values librosa computes the same way: relative
#: 1e-4, plus 1e-3 absolute for MFCC means/stds (dB units: float32 DCT round-off).
RTOL = 1e-4
ATOL_MFCC = 1e-3
GENRES = ("classical", "rock", "electronic", "pop")


def _emotify_tracks(root: Path, n_tracks: int) -> list[Path]:
    out = []
    for i in range(1, 26):
        for genre in GENRES:
            p = root / "emotifymusic" / genre / f"{i}.mp3"
            if p.is_file():
                out.append(p)
            if len(out) == n_tracks:
                return out
    return out


def _generated_tracks(folder: Path, n_tracks: int, seconds: float) -> list[Path]:
    """Music-like WAV files: decaying harmonic notes on a beat over a noise floor."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_tracks):
        rng = np.random.default_rng(k)
        n = int(seconds * 44100)
        y = 0.02 * rng.standard_normal(n)
        beat = int(44100 * 60.0 / rng.uniform(80, 150))
        note = np.arange(beat) / 44100
        env = np.exp(-note / 0.15)
        for j, start in enumerate(range(0, n - beat, beat)):
            f = 220.0 * 2 ** (rng.integers(0, 12) / 12)
            y[start : start + beat] += env * sum(np.sin(2 * np.pi * h * f * note) / h for h in (1, 2, 3))
        stereo = np.stack([y, np.roll(y, 100)], axis=1) * 0.2
        p = folder / f"track{k}.wav"
        sf.write(p, stereo.astype(np.float32), 44100)
        paths.append(p)
    return paths


def naive_features(y: np.ndarray, sr: int) -> dict[str, float]:
    """The per-feature librosa loop (each call computes its own transform)."""
    import librosa

    chroma = librosa.feature.chroma_stft(y=y, sr=sr, tuning=0.0)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=14)[1:]
    out = {
        "rms_mean": librosa.feature.rms(y=y).mean(),
        "zcr_mean": librosa.feature.zero_crossing_rate(y).mean(),
        "spectral_centroid_mean": librosa.feature.spectral_centroid(y=y, sr=sr).mean(),
        "spectral_spread_mean": librosa.feature.spectral_bandwidth(y=y, sr=sr).mean(),
        "spectral_flatness_mean": librosa.feature.spectral_flatness(y=y, power=1.0).mean(),
        "spectral_rolloff85_mean": librosa.feature.spectral_rolloff(y=y, sr=sr, roll_percent=0.85).mean(),
        "spectral_rolloff95_mean": librosa.feature.spectral_rolloff(y=y, sr=sr, roll_percent=0.95).mean(),
        "event_density": len(librosa.onset.onset_detect(y=y, sr=sr)) / (len(y) / sr),
        "tempo": float(np.atleast_1d(librosa.feature.tempo(y=y, sr=sr))[0]),
    }
    delta = librosa.feature.delta(mfcc)
    tonnetz = librosa.feature.tonnetz(sr=sr, chroma=chroma)
    for i in range(mfcc.shape[0]):
        out[f"mfcc_{i + 1:02d}_mean"] = mfcc[i].mean()
        out[f"mfcc_{i + 1:02d}_std"] = mfcc[i].std()
        out[f"mfcc_delta_{i + 1:02d}_std"] = delta[i].std()
    for i, pc in enumerate(("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")):
        out[f"chroma_{pc}_mean"] = chroma[i].mean()
    for i in range(6):
        out[f"tonal_centroid_{i + 1}_mean"] = tonnetz[i].mean()
    return {k: float(v) for k, v in out.items()}


def _cold_start_seconds() -> float:
    """Seconds for a fresh process to import emodist and extract one segment."""
    code = (
        "import time, numpy as np; t=time.perf_counter();"
        "from emodist.features import spectral, handcrafted; from emodist.spec import ExtractionSpec;"
        "y=(0.1*np.random.default_rng(0).standard_normal(22050*15)).astype(np.float32);"
        "handcrafted.extract(spectral.analyse(y, 22050, ExtractionSpec()));"
        "print(time.perf_counter()-t)"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, cwd=root)
    return float(out.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> float:
    return max(values) - min(values) if values else 0.0


def run(quick: bool = False) -> dict:
    """Time both pipelines on the same segments; see the module docstring."""
    import librosa
    from threadpoolctl import threadpool_limits

    from emodist.data import audio
    from emodist.features import handcrafted, spectral
    from emodist.spec import ExtractionSpec

    cfg = ExtractionSpec(sr=SR)
    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    n_tracks = 1 if quick else 12
    if root and (Path(root) / "data.csv").is_file():
        tracks = _emotify_tracks(Path(root), n_tracks)
        source = f"{len(tracks)} Emotify MP3 tracks (44.1 kHz stereo)"
        tmp = None
    else:
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="emodist-bench-hc-")
        tracks = _generated_tracks(Path(tmp.name), n_tracks, 30.0 if quick else 60.0)
        source = f"{len(tracks)} generated 44.1 kHz stereo WAV tracks"
    per_track = 2 if quick else 4

    naive_decode, naive_feat, emo_decode, emo_feat, emo_seed, emo_common = [], [], [], [], [], []
    wall_naive, wall_emo = [], []
    max_rel, worst, tempo_agree, n_segments = 0.0, "", [], 0
    with threadpool_limits(1):
        # warm both code paths (imports, numba caches, filterbanks) before timing
        y0 = audio.load_track(str(tracks[0]), SR, duration_s=SEGMENT_S)
        common = [n for n in naive_features(y0, SR) if n != "tempo"] + ["tempo"]
        handcrafted.extract(spectral.analyse(y0, SR, cfg))
        for path in tracks:
            t0 = clock()
            track = audio.load_track(str(path), SR)
            decode_once = clock() - t0
            starts = [i * SEGMENT_S for i in range(per_track)
                      if (i + 1) * SEGMENT_S <= track.shape[0] / SR]
            for start in starts:
                n_segments += 1
                emo_decode.append(decode_once / len(starts))
                t0 = clock()
                y_naive, _ = librosa.load(str(path), sr=SR, mono=True, offset=start,
                                          duration=SEGMENT_S, res_type="soxr_hq")
                naive_decode.append(clock() - t0)
                t0, w0 = clock(), time.perf_counter()
                ref = naive_features(y_naive, SR)
                naive_feat.append(clock() - t0)
                wall_naive.append(time.perf_counter() - w0)

                seg = audio.cut(track, SR, start, SEGMENT_S)
                t0, w0 = clock(), time.perf_counter()
                vec = handcrafted.extract(spectral.analyse(seg, SR, cfg))
                emo_feat.append(clock() - t0)
                wall_emo.append(time.perf_counter() - w0)
                t0 = clock()
                handcrafted.extract(spectral.analyse(seg, SR, cfg), "seed17")
                emo_seed.append(clock() - t0)
                t0 = clock()
                handcrafted.extract_dict(spectral.analyse(seg, SR, cfg), names=common)
                emo_common.append(clock() - t0)

                # values both compute, on the naive loop's own decode of the segment
                mine = dict(zip(handcrafted.feature_names(),
                                handcrafted.extract(spectral.analyse(y_naive, SR, cfg))))
                for name, value in ref.items():
                    if name == "tempo":
                        continue
                    atol = ATOL_MFCC if name.startswith("mfcc") else 1e-9
                    ratio_tol = abs(float(mine[name]) - value) / (RTOL * abs(value) + atol)
                    if ratio_tol > max_rel:
                        max_rel, worst = ratio_tol, name
                ratio = float(mine["tempo"]) / ref["tempo"] if ref["tempo"] > 0 else 0.0
                tempo_agree.append(min(abs(ratio - r) for r in (0.5, 1.0, 2.0)) < 0.05)
                del vec
    if tmp is not None:
        tmp.cleanup()

    ms = 1000.0
    med = {k: statistics.median(v) * ms for k, v in (
        ("nd", naive_decode), ("nf", naive_feat), ("ed", emo_decode), ("ef", emo_feat),
        ("es", emo_seed), ("ec", emo_common))}
    speed_features = med["nf"] / med["ec"]
    speed_full = med["nf"] / med["ef"]
    speed_total = (med["nd"] + med["nf"]) / (med["ed"] + med["ec"])
    speed_wall = statistics.median(wall_naive) / statistics.median(wall_emo)
    cold = 0.0 if quick else _cold_start_seconds()
    n_common = len(common) - 1
    rows = [
        row("decode, naive (librosa.load per segment)", med["nd"], _spread(naive_decode) * ms,
            "CPU ms/segment", "soundfile/audioread + soxr_hq, offset/duration"),
        row("decode, emodist (track once, segments are views)", med["ed"], _spread(emo_decode) * ms,
            "CPU ms/segment", "load_track time / segments of the track"),
        row("features, naive librosa loop", med["nf"], _spread(naive_feat) * ms, "CPU ms/segment",
            f"{n_common + 1} values, each call its own STFT/mel/onset envelope"),
        row("features, emodist full set", med["ef"], _spread(emo_feat) * ms, "CPU ms/segment",
            f"analyse + extract, {len(handcrafted.feature_names())} values, one STFT"),
        row("features, emodist seed17", med["es"], _spread(emo_seed) * ms, "CPU ms/segment",
            f"{len(handcrafted.feature_names('seed17'))} values"),
        row("features, emodist, the naive loop's values", med["ec"], _spread(emo_common) * ms,
            "CPU ms/segment", "extract_dict(names=...): only the groups those values need"),
        row("speed-up, features both compute", speed_features, 0.0, "x",
            "naive / emodist on the same values; target >= 5"),
        row("speed-up, naive loop vs emodist full set", speed_full, 0.0, "x",
            "emodist computing 131 values (roughness, key, attack... too)"),
        row("speed-up, decode + features", speed_total, 0.0, "x",
            "per segment, both stages, same values"),
        row("speed-up, full set, wall clock", speed_wall, 0.0, "x",
            "medians of wall-clock times (noisy on a shared machine)"),
        row("worst difference / test tolerance, common values", max_rel, 0.0, "",
            f"{n_common} values both compute, <= 1 means all within the tests' tolerance "
            f"(rel {RTOL:g}, MFCC + {ATOL_MFCC:g} abs); worst: {worst}"),
        row("tempo agrees with librosa.feature.tempo", float(np.mean(tempo_agree)), 0.0,
            "fraction", "within 5 % or an octave; emodist interpolates the best lag"),
        row("segments", float(n_segments), 0.0, "", source),
    ]
    if not quick:
        rows.append(row("cold start, fresh process", cold, 0.0, "s",
                        "import + librosa numba caches + filterbanks + first segment"))
    summary = (f"{n_segments} segments of {SEGMENT_S:g} s from {source}: the same "
               f"{n_common + 1} features {med['nf']:.0f} -> {med['ec']:.1f} CPU ms/segment "
               f"({speed_features:.1f}x), full 131-value set {med['ef']:.1f} ms "
               f"({speed_full:.1f}x); decode "
               f"{med['nd']:.0f} -> {med['ed']:.1f} ms/segment; common values use "
               f"{max_rel:.2f} of the test tolerance.")
    return {"name": "handcrafted features: naive librosa loop vs one-STFT extractor",
            "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
