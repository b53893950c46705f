"""Golden references: emodist's features of 4 real Emotify segments vs values made independently.

``tests/reference/golden_handcrafted.json`` holds the 131 'full' handcrafted
features of segments 0 and 2 (15 s windows from the file start) of
``classical/1.mp3`` and ``electronic/1.mp3``, computed by librosa's own
functions or by numpy/scipy from the formulas of docs/features.md, not by
emodist's code.  ``tests/reference/golden_deep.json`` holds the output of the
original TorchScript Inception-v3 (run under torch, outside the project) for
emodist's spectrogram images of the same segments: a fixed 32-d Gaussian
projection, the L2 norm and the first 16 raw values, plus a pin of each image
(SHA-256 and 8 x 8 block means).  How they were made: tests/reference/README.md.

Tolerances (per value, ``|got - ref| <= atol + rtol * |ref|``, relative to
the value itself, not to the largest value of the vector):

- handcrafted: ``rtol = 1e-4``; the two code paths agree to 3e-5 or better
  on this machine (spectral rolloff, bin-quantised per frame, is the
  loosest at 1e-5).  Floors for values near zero, about ten times the float32
  resolution of the quantity they summarise: MFCC 1e-4 (dB-scale cepstra of
  magnitude up to ~200), MFCC delta 1e-5, tonal centroid 1e-6 (in [-1, 1]).
  Counts and integers are compared (almost) exactly: ``key``, ``key_mode``
  (atol 1e-9), ``event_density`` and ``low_energy`` (rtol 1e-6: one onset or
  frame more is a change of 1e-3 or more).
- images: block means within 0.05 grey levels (one pixel changed by 1 moves
  a block mean by 7e-4; any change of the image definition moves them by
  whole levels).
- Inception: with a bit-identical image, ``atol = 1e-4`` on the projected
  values and on the raw values, ``rtol = 1e-5`` on the norm (ONNX Runtime vs
  TorchScript: 1.4e-6 on the projection, 6.7e-6 on a raw value).  A single
  pixel that differs by 1 moves projected values by up to 2.4e-4, so when the
  image is not bit-identical (another platform's rounding) only the looser
  ``atol = 1e-2`` / ``rtol = 2e-3`` (measured for 1000 such pixels: 8e-3,
  1.4e-3) can be asserted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from emodist.data import audio
from emodist.features import handcrafted, images, spectral
from emodist.features.inception import InceptionV3
from emodist.spec import ExtractionSpec

# the fixtures that build or locate the real model (EMODIST_MODEL or pytest's cache)

DATA = Path(__file__).resolve().parents[1] / "reference"
HANDCRAFTED = json.loads((DATA / "golden_handcrafted.json").read_text())
DEEP = json.loads((DATA / "golden_deep.json").read_text())
REGENERATE = "regenerate with tests/reference/make_golden.py (see tests/reference/README.md)"

#: Handcrafted relative tolerance per value.
RTOL = 1e-4
#: Absolute floors for values that can be near zero, by name prefix (longest prefix wins).
ATOL_FLOORS = {"mfcc_": 1e-4, "mfcc_delta_": 1e-5, "tonal_centroid_": 1e-6}
#: Integers: compared exactly (up to the JSON's 9 significant digits).
INTEGER_FEATURES = ("key", "key_mode")
#: Counts and shares of frames: a single onset or frame more is a change of >= 1e-3.
COUNT_FEATURES = ("event_density", "low_energy")

#: Image block means: grey levels.
IMAGE_BLOCK_ATOL = 0.05
#: Inception, bit-identical image: projected and raw values (absolute), norm (relative).
DEEP_ATOL, DEEP_NORM_RTOL = 1e-4, 1e-5
#: Inception, image not bit-identical (a few pixels rounded the other way).
DEEP_ATOL_LOOSE, DEEP_NORM_RTOL_LOOSE = 1e-2, 2e-3


def tolerance(name: str) -> tuple[float, float]:
    """``(rtol, atol)`` of one handcrafted feature."""
    if name in INTEGER_FEATURES:
        return 0.0, 1e-9
    if name in COUNT_FEATURES:
        return 1e-6, 0.0
    prefixes = [p for p in ATOL_FLOORS if name.startswith(p)]
    return RTOL, (ATOL_FLOORS[max(prefixes, key=len)] if prefixes else 0.0)


def test_reference_is_for_the_current_feature_definition():
    """A change of feature definition must change the version and the reference together."""
    ref, now = HANDCRAFTED["feature_names_version"], handcrafted.FEATURE_NAMES_VERSION
    assert ref == now, (
        f"emodist.features.handcrafted.FEATURE_NAMES_VERSION is {now!r} but "
        f"tests/reference/golden_handcrafted.json was made for version {ref!r}: a feature "
        f"definition changed, so the independent reference must be reviewed and {REGENERATE}")
    cfg = HANDCRAFTED["config"]
    names = handcrafted.feature_names(HANDCRAFTED["feature_set"], n_mfcc=cfg["n_mfcc"])
    assert names == HANDCRAFTED["names"], (
        f"feature names differ from the reference at version {now!r} "
        f"(added {sorted(set(names) - set(HANDCRAFTED['names']))}, removed "
        f"{sorted(set(HANDCRAFTED['names']) - set(names))}, or reordered): bump "
        f"FEATURE_NAMES_VERSION and {REGENERATE}")


def test_projection_is_reproducible():
    """The seeded projection of the deep reference is the one it was made with."""
    P = _projection()
    spec = DEEP["projection"]
    np.testing.assert_allclose(P[0, :4], spec["checksum_first"], rtol=1e-8)
    np.testing.assert_allclose(P.sum(), spec["checksum_sum"], rtol=1e-8)


def _projection() -> np.ndarray:
    spec = DEEP["projection"]
    rng = np.random.default_rng(spec["seed"])
    return rng.standard_normal((spec["dim"], 2048)) / np.sqrt(2048.0)


@pytest.fixture(scope="module")
def analyses(emotify_root):
    """emodist's decode + one STFT of each reference segment (each track decoded once)."""
    c = HANDCRAFTED["config"]
    cfg = ExtractionSpec(sr=c["sr"], n_fft=c["n_fft"], hop_length=c["hop_length"])
    tracks: dict[str, np.ndarray] = {}
    out = []
    for seg in HANDCRAFTED["segments"]:
        if seg["track"] not in tracks:
            tracks[seg["track"]] = audio.load_track(
                str(emotify_root / "emotifymusic" / seg["track"]), cfg.sr)
        y = audio.cut(tracks[seg["track"]], cfg.sr, seg["start_s"], c["segment_seconds"])
        assert y.shape[0] == seg["samples"]
        out.append(spectral.analyse(y, cfg.sr, cfg))
    return cfg, out


@pytest.fixture(scope="module")
def handcrafted_values(analyses):
    _, ans = analyses
    n_mfcc = HANDCRAFTED["config"]["n_mfcc"]
    return np.array([handcrafted.extract(an, HANDCRAFTED["feature_set"], n_mfcc=n_mfcc)
                     for an in ans], dtype=np.float64)


def _compare(got: np.ndarray, ref: np.ndarray, names: list[str]) -> list[str]:
    """One line per feature out of tolerance (worst segment), empty when all agree."""
    bad = []
    for j, name in enumerate(names):
        rtol, atol = tolerance(name)
        diff = np.abs(got[:, j] - ref[:, j])
        over = diff > atol + rtol * np.abs(ref[:, j])
        if over.any():
            i = int(np.argmax(diff - rtol * np.abs(ref[:, j])))
            seg = HANDCRAFTED["segments"][i]
            rel = diff[i] / abs(ref[i, j]) if ref[i, j] else np.inf
            bad.append(f"{name}: {seg['track']} #{seg['index']}: emodist {got[i, j]:.9g}, "
                       f"reference {ref[i, j]:.9g} (rel {rel:.2e}; rtol {rtol:g}, atol {atol:g})")
    return bad


@pytest.mark.emotify
def test_handcrafted_matches_independent_reference(handcrafted_values):
    test_reference_is_for_the_current_feature_definition()
    names = HANDCRAFTED["names"]
    ref = np.array(HANDCRAFTED["values"], dtype=np.float64)
    bad = _compare(handcrafted_values, ref, names)
    assert not bad, (f"{len(bad)} handcrafted features differ from the independent "
                     "reference:\n" + "\n".join(bad))


def _blocks(img: np.ndarray, grid: int) -> np.ndarray:
    rows = np.array_split(np.asarray(img, dtype=np.float64), grid, axis=0)
    return np.array([[b.mean() for b in np.array_split(r, grid, axis=1)] for r in rows])


@pytest.fixture(scope="module")
def spectrogram_images(analyses):
    _, ans = analyses
    picture = InceptionV3(image_size=DEEP["image"]["size"])
    return np.stack([images.spectrogram_image(an, picture) for an in ans])


def _identical(img: np.ndarray, ref: dict) -> bool:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest() == ref["image_sha256"]


@pytest.mark.emotify
def test_spectrogram_images_match_reference(spectrogram_images):
    grid = DEEP["image"]["grid"]
    for img, ref in zip(spectrogram_images, DEEP["segments"], strict=True):
        where = f"{ref['track']} #{ref['index']}"
        diff = np.abs(_blocks(img, grid) - np.array(ref["image_blocks"])).max()
        assert diff <= IMAGE_BLOCK_ATOL, (
            f"{where}: spectrogram image changed (block means differ by up to {diff:.3f} "
            f"grey levels, image sha256 {'equal' if _identical(img, ref) else 'differs'}): "
            f"if the image definition changed on purpose, {REGENERATE}")
        assert abs(img.mean() - ref["image_mean"]) <= 1e-3 + IMAGE_BLOCK_ATOL / grid


@pytest.mark.emotify
@pytest.mark.model
def test_inception_matches_torchscript_reference(spectrogram_images, real_model):
    from emodist.models.session import embed

    feats = embed(spectrogram_images, real_model, batch_size=len(spectrogram_images))
    feats = feats.astype(np.float64)
    P = _projection()
    for img, f, ref in zip(spectrogram_images, feats, DEEP["segments"], strict=True):
        exact = _identical(img, ref)
        atol, nrtol = (DEEP_ATOL, DEEP_NORM_RTOL) if exact else (DEEP_ATOL_LOOSE,
                                                                 DEEP_NORM_RTOL_LOOSE)
        where = (f"{ref['track']} #{ref['index']} ("
                 + ("bit-identical image" if exact else "image not bit-identical: loose bounds")
                 + ")")
        proj = P @ f
        np.testing.assert_allclose(proj, ref["projection"], rtol=0, atol=atol,
                                   err_msg=f"{where}: projected Inception features")
        np.testing.assert_allclose(f[: len(ref["first"])], ref["first"], rtol=0, atol=atol,
                                   err_msg=f"{where}: first raw Inception features")
        np.testing.assert_allclose(np.linalg.norm(f), ref["norm"], rtol=nrtol, atol=0,
                                   err_msg=f"{where}: norm of the Inception features")
