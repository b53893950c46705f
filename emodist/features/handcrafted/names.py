"""Feature names, their order, the named feature sets and the version of the list.

:data:`FEATURE_NAMES_VERSION` changes whenever a name, the order or the
meaning of a column changes; it is written into every feature store.
"""

from __future__ import annotations

import functools

from emodist.errors import EmodistError
from emodist.features.spectral import N_MELS

__all__ = [
    "FEATURE_NAMES_VERSION", "FEATURE_SETS", "PITCH_CLASSES", "SHAPE_BASES", "chroma_bases",
    "feature_names", "group_names", "groups_of_names", "groups_of_set", "mfcc_bases",
    "names_of", "stat_names", "tonal_bases",
]

#: Version of the feature-name list and of the meaning of each column.
FEATURE_NAMES_VERSION = "2"

#: Named feature selections accepted by :func:`feature_names` and ``extract``.
FEATURE_SETS = ("full", "seed17")

#: Pitch classes in chroma order.
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

#: Frame-wise spectral shape descriptors, in output order.
SHAPE_BASES = (
    "spectral_centroid", "spectral_spread", "spectral_skewness", "spectral_kurtosis",
    "spectral_flatness", "spectral_entropy", "spectral_rolloff85", "spectral_rolloff95",
    "brightness", "spectral_irregularity",
)


def stat_names(base: str) -> list[str]:
    """``[base_mean, base_std]``."""
    return [f"{base}_mean", f"{base}_std"]


def _stat_names_of(bases) -> list[str]:
    return [n for base in bases for n in stat_names(base)]


def mfcc_bases(n_mfcc: int, *, prefix: str = "mfcc_") -> list[str]:
    """``mfcc_01`` ... (or ``mfcc_delta_01`` ... with ``prefix="mfcc_delta_"``)."""
    return [f"{prefix}{i:02d}" for i in range(1, n_mfcc + 1)]


def chroma_bases() -> list[str]:
    """``chroma_C`` ... ``chroma_B``."""
    return [f"chroma_{pc}" for pc in PITCH_CLASSES]


def tonal_bases() -> list[str]:
    """``tonal_centroid_1`` ... ``tonal_centroid_6``."""
    return [f"tonal_centroid_{i}" for i in range(1, 7)]


def group_names(n_mfcc: int) -> dict[str, list[str]]:
    """Feature names per computing group, in output order (the ``full`` set)."""
    return {
        "dynamics": ["rms", *stat_names("rms"), "low_energy"],
        "zcr": stat_names("zcr"),
        "shape": _stat_names_of(SHAPE_BASES),
        "flux": stat_names("spectral_flux"),
        "roughness": stat_names("roughness"),
        "mfcc": _stat_names_of(mfcc_bases(n_mfcc))
        + _stat_names_of(mfcc_bases(n_mfcc, prefix="mfcc_delta_")),
        "rhythm": ["tempo", "pulse_clarity", "event_density"],
        "attack": [*stat_names("attack_time"), *stat_names("attack_slope")],
        "chroma": _stat_names_of(chroma_bases()),
        "key": ["key", "key_mode", "key_clarity", "mode"],
        "tonal": _stat_names_of(tonal_bases()) + stat_names("hcdf"),
    }


def _seed17_names(n_mfcc: int) -> list[str]:
    """The study's 17 MIRtoolbox features, one column each except MFCC and chroma."""
    return [
        "rms_mean", "low_energy", "tempo", "pulse_clarity", "event_density",
        "zcr_mean", "spectral_centroid_mean", "spectral_spread_mean",
        "spectral_flatness_mean", "spectral_entropy_mean", "spectral_rolloff85_mean",
        "brightness_mean", "roughness_mean",
        *[f"{b}_mean" for b in mfcc_bases(n_mfcc)],
        *[f"{b}_mean" for b in chroma_bases()],
        "key_clarity", "mode",
    ]


@functools.lru_cache(maxsize=8)
def names_of(feature_set: str, n_mfcc: int) -> tuple[str, ...]:
    """The names of a feature set, cached; raises :class:`EmodistError` for bad arguments."""
    if not 1 <= n_mfcc < N_MELS:
        raise EmodistError(f"n_mfcc must be between 1 and {N_MELS - 1}, got {n_mfcc!r}")
    if feature_set == "full":
        return tuple(n for names in group_names(n_mfcc).values() for n in names)
    if feature_set == "seed17":
        return tuple(_seed17_names(n_mfcc))
    raise EmodistError(
        f"unknown feature set {feature_set!r}; choose from {', '.join(FEATURE_SETS)}"
    )


def feature_names(feature_set: str = "full", n_mfcc: int = 13) -> list[str]:
    """Names of the handcrafted features, in the order ``extract`` returns them.

    Parameters
    ----------
    feature_set : {"full", "seed17"}
        ``"full"``: every feature; ``"seed17"``: the study's 17 MIRtoolbox
        features (see ``docs/features.md``).
    n_mfcc : int
        Number of MFCCs (coefficients 1..n_mfcc, the 0th excluded).

    Returns
    -------
    list of str

    Raises
    ------
    EmodistError
        Unknown feature set (the message lists the valid ones).
    """
    return list(names_of(str(feature_set), int(n_mfcc)))


@functools.lru_cache(maxsize=8)
def groups_of_set(feature_set: str, n_mfcc: int) -> tuple[str, ...]:
    """The computing groups a feature set needs, in output order."""
    wanted = set(names_of(feature_set, n_mfcc))
    return tuple(g for g, names in group_names(n_mfcc).items() if wanted.intersection(names))


def groups_of_names(names, n_mfcc: int) -> list[str]:
    """The computing groups the given feature names need; unknown names raise :class:`EmodistError`."""
    wanted = set(names)
    groups = group_names(n_mfcc)
    unknown = wanted.difference(n for g in groups.values() for n in g)
    if unknown:
        raise EmodistError(f"unknown handcrafted feature {min(unknown)!r}")
    return [g for g, group in groups.items() if wanted.intersection(group)]
