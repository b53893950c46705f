"""Handcrafted features: a MIRtoolbox-equivalent set from one STFT per segment.

Every feature is derived from the :class:`emodist.features.spectral.Analysis` of a
segment: its samples (RMS, zero crossings) and its one magnitude STFT
(everything spectral, MFCC from the log-mel spectrogram, the onset envelope
from the log-mel spectrogram, tempo from the onset envelope, chroma from
``S ** 2``, key, tonal centroid and harmonic change from the chroma).  No
function here computes another transform of the audio.

Modules, by feature family: :mod:`.dynamics` (RMS, low energy, zero
crossings), :mod:`.rhythm` (onsets, tempo, pulse clarity, event density,
attacks), :mod:`.timbre` (spectral shape, flux, roughness, MFCC),
:mod:`.tonality` (chroma, key, mode, tonal centroid, HCDF); :mod:`.names`
holds the names, sets and :data:`FEATURE_NAMES_VERSION`, :mod:`.peaks` the
spectral peaks shared by roughness and key, :mod:`.common` the helpers.

Frame-wise features are summarised by their mean and standard deviation over
the frames (``*_mean``, ``*_std``); features MIRtoolbox reports as one value
per segment (tempo, pulse clarity, event density, low-energy rate, key...)
have one column.  The names, their order and the MIRtoolbox function each one
corresponds to are listed in ``docs/features.md``.

Silence (or any frame with no energy) never produces NaN or inf: spectral
shape statistics are taken over the frames that hold energy, and a segment
without any such frame yields 0 for every feature.
"""

from __future__ import annotations

import numpy as np

from emodist.features.handcrafted import dynamics, rhythm, timbre, tonality
from emodist.features.handcrafted.common import voiced
from emodist.features.handcrafted.names import (
    FEATURE_NAMES_VERSION,
    FEATURE_SETS,
    feature_names,
    groups_of_names,
    groups_of_set,
    names_of,
)
from emodist.features.spectral import Analysis

__all__ = ["FEATURE_NAMES_VERSION", "FEATURE_SETS", "extract", "extract_dict", "feature_names"]

_GROUP_FUNCS = {
    "dynamics": dynamics.dynamics_features,
    "zcr": dynamics.zcr_features,
    "shape": timbre.shape_features,
    "flux": timbre.flux_features,
    "roughness": timbre.roughness_features,
    "rhythm": rhythm.rhythm_features,
    "attack": rhythm.attack_features,
    "chroma": tonality.chroma_features,
    "key": tonality.key_features,
    "tonal": tonality.tonal_features,
}


def extract_dict(analysis: Analysis, feature_set: str = "full", n_mfcc: int = 13,
                 names=None) -> dict[str, float]:
    """Feature name -> value for one segment (see :func:`extract`).

    Parameters
    ----------
    analysis : emodist.features.spectral.Analysis
    feature_set : {"full", "seed17"}
    n_mfcc : int
    names : sequence of str, optional
        Compute only these features (any names of the full set) instead of
        ``feature_set``; only the groups they need are computed.

    Returns
    -------
    dict of str -> float
        In the order of the names.
    """
    n_mfcc = int(n_mfcc)
    if names is None:
        names = names_of(str(feature_set), n_mfcc)
        groups = groups_of_set(str(feature_set), n_mfcc)
    else:
        names = list(names)
        groups = groups_of_names(names, n_mfcc)
    if not voiced(analysis).any():
        return dict.fromkeys(names, 0.0)
    values: dict[str, float] = {}
    for group in groups:
        if group == "mfcc":
            values.update(timbre.mfcc_features(analysis, n_mfcc))
        else:
            values.update(_GROUP_FUNCS[group](analysis))
    return {n: values[n] for n in names}


def extract(analysis: Analysis, feature_set: str = "full", n_mfcc: int = 13) -> np.ndarray:
    """The handcrafted feature vector of one segment.

    Parameters
    ----------
    analysis : emodist.features.spectral.Analysis
        The segment and its one STFT (:func:`emodist.features.spectral.analyse`).
    feature_set : {"full", "seed17"}
        Which named selection to compute.
    n_mfcc : int
        Number of MFCCs (the group's ``n_mfcc``).

    Returns
    -------
    np.ndarray
        ``(len(feature_names(feature_set, n_mfcc)),)`` float32 in the order
        of :func:`feature_names`; always finite (any non-finite value left by
        a degenerate input is written as 0).

    Raises
    ------
    EmodistError
        Unknown feature set.
    """
    names = names_of(str(feature_set), int(n_mfcc))
    values = extract_dict(analysis, feature_set, n_mfcc)
    vec = np.fromiter((values[n] for n in names), dtype=np.float64, count=len(names))
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
