"""The handcrafted feature group: MIRtoolbox-style descriptors from the shared STFT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from emodist.features import handcrafted
from emodist.features.base import FeatureGroup, Segment

__all__ = ["Handcrafted"]


@dataclass(frozen=True)
class Handcrafted(FeatureGroup):
    """The handcrafted vector of :mod:`emodist.features.handcrafted`.

    Parameters
    ----------
    feature_set : {"full", "seed17"}
        Named selection (131 or 40 values with 13 MFCCs).
    n_mfcc : int
        Number of MFCCs.
    """

    name: ClassVar[str] = "handcrafted"
    long_name: ClassVar[str] = "handcrafted descriptors (MIRtoolbox equivalent)"
    options: ClassVar[dict[str, str]] = {"feature_set": "feature_set", "n_mfcc": "n_mfcc"}
    feature_set: str = "full"
    n_mfcc: int = 13

    @property
    def version(self) -> str:  # the feature definitions' own version
        return handcrafted.FEATURE_NAMES_VERSION  # read when asked (tests set it)

    def __post_init__(self) -> None:
        self.feature_names()  # an unknown feature set fails here, on the driver

    def feature_names(self) -> list[str]:
        return handcrafted.feature_names(self.feature_set, self.n_mfcc)

    def prepare(self, segment: Segment) -> np.ndarray:
        return handcrafted.extract(segment.analysis, self.feature_set, self.n_mfcc)
