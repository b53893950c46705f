"""Hand-written copies of library functions against the library calls they copy.

emodist keeps its own version of a library function only where this
benchmark shows it faster for equal values.  For each such pair, on the same
15 s segments (22050 Hz, ``n_fft`` 2048, hop 512; real Emotify tracks when
``EMODIST_EMOTIFY_ROOT`` is set, generated music-like audio otherwise) and
the same precomputed inputs (samples, ``S``, ``S ** 2``, log-mel spectrogram,
onset envelope), the rows give the median CPU milliseconds per segment of the
copy and of the library call, the speed-up, and the largest difference of the
values relative to the reference's maximum (the tests' tolerance is 1e-4;
peak indices must be equal).  ``tempo_autocorrelation`` is a different
estimator from ``librosa.feature.tempo`` (global autocorrelation with
interpolation and a clarity value, not a windowed tempogram): its row gives
the share of segments where both agree within 5 % or an octave.

A copy is kept when it is at least 1.3x faster and saves at least 2 % of the
full-set cost per segment (the "features, full set" row); the note of each
speed-up row says which.  Rows without a copy time the library call emodist
makes where its copy was dropped (rms, onset envelope, onset peak picking,
chroma normalisation, MFCC, delta; their figures before the change are in
``docs/features.md``).  BLAS is limited to one thread (a one-thread
Dask worker); times are CPU seconds of this process.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, row

SR = 22050
SEGMENT_S = 15.0
clock = time.process_time
#: Relative tolerance the tests use for values librosa computes the same way.
RTOL = 1e-4
#: A copy is kept only when it is at least this much faster ...
MIN_SPEEDUP = 1.3
#: ... and saves at least this share of the full-set cost per segment.
MIN_SHARE = 0.02


def _segments(n: int) -> tuple[list[np.ndarray], str]:
    """``n`` 15 s mono segments at 22050 Hz and a description of their source."""
    from emodist.data import audio

    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if root and (Path(root) / "data.csv").is_file():
        from benchmarks.bench_handcrafted import _emotify_tracks

        segs = []
        for path in _emotify_tracks(Path(root), n):
            y = audio.load_track(str(path), SR, offset_s=SEGMENT_S, duration_s=SEGMENT_S)
            if y.shape[0] >= SEGMENT_S * SR:
                segs.append(np.ascontiguousarray(y[: int(SEGMENT_S * SR)]))
        return segs, f"{len(segs)} Emotify segments (one per track)"
    import tempfile

    from benchmarks.bench_handcrafted import _generated_tracks

    with tempfile.TemporaryDirectory(prefix="emodist-bench-copies-") as tmp:
        paths = _generated_tracks(Path(tmp), n, SEGMENT_S)
        segs = [audio.load_track(str(p), SR) for p in paths]
    return segs, f"{len(segs)} generated music-like segments"


def _rel(got, ref) -> float:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(got - ref)) / (np.max(np.abs(ref)) + 1e-12)) if ref.size else 0.0


def _equal_indices(got, ref) -> float:
    """0 when two index arrays are equal, else 1."""
    return 0.0 if np.array_equal(np.asarray(got), np.asarray(ref)) else 1.0


def _tempo_disagrees(got, ref) -> float:
    """1 when the tempi differ by more than 5 % and are not an octave apart, else 0."""
    ratio = got[0] / float(np.atleast_1d(ref)[0]) if np.atleast_1d(ref)[0] > 0 else 0.0
    return 0.0 if min(abs(ratio - r) for r in (0.5, 1.0, 2.0)) < 0.05 else 1.0


def _pairs(an, px) -> list[tuple[str, object, object, object]]:
    """(row name, copy or None, library call, comparison) on one segment's inputs."""
    import librosa
    import scipy.stats

    from emodist.features import images
    from emodist.features.handcrafted import common, dynamics, rhythm, timbre
    from emodist.features.spectral import chroma_basis

    y, S, P, freqs, sr, hop, n_fft = an.y, an.S, an.power, an.freqs, an.sr, an.hop_length, an.n_fft
    L = common.log_mel(an)
    env = rhythm.onset_envelope(an)
    m = timbre.mfcc(an)
    total = timbre._bin_sums(S)

    def lib_flatness_entropy():
        S_th = np.maximum(S, np.float32(common.AMIN))
        flat = librosa.feature.spectral_flatness(S=S, power=1.0)[0]
        return flat, scipy.stats.entropy(S_th, axis=0) / np.log(S.shape[0])

    pairs = [
        ("frame RMS, librosa.feature.rms(y=)", None,
         lambda: librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)[0], _rel),
        ("zcr_frames vs librosa.feature.zero_crossing_rate",
         lambda: dynamics.zcr_frames(y, frame_length=n_fft, hop_length=hop),
         lambda: librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)[0],
         _rel),
        ("onset envelope, librosa.onset.onset_strength(S=log-mel)",
         None,
         lambda: librosa.onset.onset_strength(S=L, sr=sr, hop_length=hop, n_fft=n_fft), _rel),
        ("onset frames, librosa.onset.onset_detect(onset_envelope=)",
         None,
         lambda: librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=hop),
         _equal_indices),
        ("chroma, cached librosa filterbank + librosa.util.normalize", None,
         lambda: librosa.util.normalize(chroma_basis(sr, n_fft) @ P, norm=np.inf, axis=0), _rel),
        ("spectral_moments vs librosa centroid + bandwidth",
         lambda: timbre.spectral_moments(S, freqs, total=total)[:2],
         lambda: (librosa.feature.spectral_centroid(S=S, freq=freqs)[0],
                  librosa.feature.spectral_bandwidth(S=S, freq=freqs)[0]), _rel),
        ("flatness_entropy vs librosa flatness + scipy entropy",
         lambda: timbre.flatness_entropy(S), lib_flatness_entropy, _rel),
        ("rolloff_bins vs librosa.feature.spectral_rolloff (85 %, 95 %)",
         lambda: [freqs[i] for i in timbre.rolloff_bins(S, (0.85, 0.95), total=total)],
         lambda: [librosa.feature.spectral_rolloff(S=S, freq=freqs, roll_percent=p)[0]
                  for p in (0.85, 0.95)], _rel),
        ("MFCC, librosa.feature.mfcc(S=log-mel)",
         None,
         lambda: librosa.feature.mfcc(S=L, n_mfcc=14)[1:], _rel),
        ("MFCC delta, librosa.feature.delta",
         None,
         lambda: librosa.feature.delta(m, width=9), _rel),
        ("tempo_autocorrelation vs librosa.feature.tempo(onset_envelope=)",
         lambda: rhythm.tempo_autocorrelation(env, sr=sr, hop_length=hop),
         lambda: librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=hop),
         _tempo_disagrees),
    ]
    try:
        from PIL import Image
    except ImportError:  # Pillow is a dev dependency only
        return pairs
    pairs.append(("resize_bilinear vs Pillow Image.resize(BILINEAR), 299 x 299",
                  lambda: images.resize_bilinear(px, (299, 299)),
                  lambda: np.asarray(Image.fromarray(px, mode="F").resize((299, 299),
                                                                          Image.BILINEAR)),
                  lambda a, b: float(np.max(np.abs(a - b)))))
    return pairs


def _cpu_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times) * 1000.0


def run(quick: bool = False) -> dict:
    """Time every copy against its library call on the same segments; see the module docstring."""
    from threadpoolctl import threadpool_limits

    from emodist.features import handcrafted, images, spectral
    from emodist.features.inception import InceptionV3
    from emodist.spec import ExtractionSpec

    cfg = ExtractionSpec(sr=SR)
    picture = InceptionV3(image_size=299)
    segs, source = _segments(2 if quick else 12)
    reps = 1 if quick else 5
    copy_ms: dict[str, list[float]] = {}
    lib_ms: dict[str, list[float]] = {}
    diff: dict[str, list[float]] = {}
    full_ms: list[float] = []
    with threadpool_limits(1):
        handcrafted.extract(spectral.analyse(segs[0], SR, cfg))  # warm caches and numba
        for y in segs:
            full_ms.append(_cpu_ms(lambda y=y: handcrafted.extract(spectral.analyse(y, SR, cfg)), reps))
            an = spectral.analyse(y, SR, cfg)
            px = np.ascontiguousarray(images.scale_to_pixels(images.log_spectrogram(an, picture))[::-1])
            for name, copy, lib, compare in _pairs(an, px):
                lib_out = lib()
                lib_ms.setdefault(name, []).append(_cpu_ms(lib, reps))
                if copy:
                    diff.setdefault(name, []).append(compare(copy(), lib_out))
                    copy_ms.setdefault(name, []).append(_cpu_ms(copy, reps))
    full = statistics.median(full_ms)
    rows = [row("features, full set", full, max(full_ms) - min(full_ms), "CPU ms/segment",
                f"analyse + extract, {len(handcrafted.feature_names())} values")]
    summary = []
    for name, libs in lib_ms.items():
        lib = statistics.median(libs)
        if name not in copy_ms:
            rows.append(row(name, lib, max(libs) - min(libs), "CPU ms/segment",
                            "the library call emodist makes (its copy was slower or saved < 2 %)"))
            continue
        rows.append(row(f"{name}: library", lib, max(libs) - min(libs), "CPU ms/segment"))
        copies = copy_ms[name]
        cp = statistics.median(copies)
        worst = max(diff[name])
        rows.append(row(f"{name}: copy", cp, max(copies) - min(copies), "CPU ms/segment",
                        f"max difference {worst:.2g}"))
        speed = lib / cp if cp > 0 else float(len(copies))
        keep = speed >= MIN_SPEEDUP and lib - cp >= MIN_SHARE * full
        rows.append(row(f"{name}: speed-up", speed, 0.0, "x",
                        f"saves {lib - cp:.2f} ms = {100 * (lib - cp) / full:.1f} % of the full set;"
                        f" {'keep the copy' if keep else 'use the library'}"))
        summary.append(f"{name.split(' vs ')[0]} {speed:.1f}x")
    return {"name": "hand-written copies vs library calls", "machine": machine(), "rows": rows,
            "summary": f"{source}, full set {full:.1f} ms/segment; copies: " + ", ".join(summary)}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
