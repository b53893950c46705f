"""One configuration object for a whole extraction, recorded in the store.

:class:`Config` is a frozen dataclass of plain values.  It travels to the
workers (it pickles), it is written into the store's attributes as JSON
(:meth:`Config.to_json`), and a rerun on an existing store compares the
stored config with the requested one (:meth:`Config.extraction_key`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

#: Feature groups an extraction can produce.
FEATURE_GROUPS = ("handcrafted", "deep")


@dataclass(frozen=True)
class Config:
    """Every parameter that changes what lands in a feature store.

    Parameters
    ----------
    sr : int
        Analysis sample rate in Hz; each track is decoded, down-mixed to mono
        and resampled once to this rate.
    segment_seconds, hop_seconds : float
        Window length and hop of the segment plan (hop < length overlaps).
    min_last_seconds : float or None
        Shortest allowed last piece of a track; ``None`` means a full
        segment (a partial last piece is dropped, as in the reference study).
    n_fft, hop_length : int
        The one STFT computed per segment, shared by every spectral feature
        and by the spectrogram image.
    n_mfcc : int
        Number of MFCCs.
    feature_set : str
        Named selection of handcrafted features (``"full"`` or ``"seed17"``).
    features : tuple of str
        Feature groups to extract, a subset of :data:`FEATURE_GROUPS`.
    image_size : int
        Side of the square spectrogram image fed to the network.
    image_scale : str
        ``"linear"`` or ``"mel"`` frequency axis of the image.
    image_log_floor : float
        Floor added before ``log10`` of the power spectrogram.
    label_rule : str
        ``"listener"`` or ``"mean"``: how the dominant emotion is chosen.
    min_class_tracks : int or None
        Classes with fewer tracks are dropped; ``None`` uses
        ``min_class_share``.
    min_class_share : float
        Classes holding less than this share of the tracks are dropped
        (default 0.02 drops 'amazement' on Emotify, as the study did).
    batch_size : int
        Images per ONNX inference call.
    model_sha256 : str or None
        SHA-256 of the ONNX model used for the deep features.
    """

    sr: int = 22050
    segment_seconds: float = 15.0
    hop_seconds: float = 15.0
    min_last_seconds: float | None = None
    n_fft: int = 2048
    hop_length: int = 512
    n_mfcc: int = 13
    feature_set: str = "full"
    features: tuple[str, ...] = FEATURE_GROUPS
    image_size: int = 299
    image_scale: str = "linear"
    image_log_floor: float = 1e-10
    label_rule: str = "listener"
    min_class_tracks: int | None = None
    min_class_share: float = 0.02
    batch_size: int = 32
    model_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        from emodist.errors import EmodistError

        if self.segment_seconds <= 0 or self.hop_seconds <= 0:
            raise EmodistError("segment and hop lengths must be positive seconds")
        unknown = [f for f in self.features if f not in FEATURE_GROUPS]
        if unknown:
            raise EmodistError(
                f"unknown feature group {unknown[0]!r}; choose from {', '.join(FEATURE_GROUPS)}"
            )
        if self.label_rule not in ("listener", "mean"):
            raise EmodistError(f"unknown label rule {self.label_rule!r}; use listener or mean")
        if self.image_scale not in ("linear", "mel"):
            raise EmodistError(f"unknown image scale {self.image_scale!r}; use linear or mel")
        object.__setattr__(self, "features", tuple(self.features))

    @property
    def min_last(self) -> float:
        """Shortest last piece in seconds (``segment_seconds`` if unset)."""
        return self.segment_seconds if self.min_last_seconds is None else self.min_last_seconds

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary of every field."""
        d = dataclasses.asdict(self)
        d["features"] = list(self.features)
        return d

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`, keys sorted."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Rebuild a config, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "features" in kw:
            kw["features"] = tuple(kw["features"])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> Config:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def extraction_key(self) -> dict[str, Any]:
        """The fields that decide what is written to a store.

        Two runs may write into the same store only when their keys are equal;
        ``batch_size`` and ``extra`` change speed, not values.
        """
        d = self.to_dict()
        for k in ("batch_size", "extra"):
            d.pop(k, None)
        return d
