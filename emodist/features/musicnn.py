"""The MusiCNN feature groups: ``musicnn_msd`` and ``musicnn_mtt``.

One class, :class:`MusiCNN`, parametrised by the tagger variant (``"msd"``:
Million Song Dataset, ``"mtt"``: MagnaTagATune) and registered under both
names.  Each segment's 16 kHz samples (the worker resamples the one decode of
the track once to 16 kHz) become musicnn's log-mel patches
(:func:`emodist.models.musicnn.input_patches`: 187 frames x 96 bands, 5
patches for a 15 s segment); every patch of a chunk goes through the ONNX
network in batches on a session cached per worker process, and each segment
keeps the mean over its patches of the selected outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from emodist.errors import DataError, EmodistError, ModelError
from emodist.features.base import FeatureGroup, InputSpec, Segment, WorkerContext
from emodist.features.card import check_sha256, patch_means

__all__ = ["DEFAULT_OUTPUTS", "MAX_BATCH", "OUTPUT_PREFIX", "MusiCNN", "slug"]

#: Selectable outputs -> short prefix of their column names.
OUTPUT_PREFIX = {"taggram": "tag", "penultimate": "pen", "max_pool": "max", "mean_pool": "mean"}
#: Default outputs: all four (1,756 columns), so that a store holds every view of the network.
DEFAULT_OUTPUTS = ("taggram", "penultimate", "max_pool", "mean_pool")
#: Most patches per ONNX Runtime call: one patch's activations (about 9 MB) stay in cache;
#: 1-2 patches per call run about 20 % faster than 8 or 32 on one thread (docs/musicnn.md).
MAX_BATCH = 2


def slug(text: str) -> str:
    """A tag as part of a column name: lower case, runs of other characters as ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


@dataclass(frozen=True)
class MusiCNN(FeatureGroup):
    """MusiCNN outputs averaged over the 3 s patches of each segment.

    Parameters
    ----------
    variant : {"msd", "mtt"}
        The tagger; the group is named ``musicnn_<variant>``.
    outputs : tuple of str
        Which outputs, in column order: ``taggram`` (50 tag probabilities,
        columns ``musicnn_msd_tag_sad``...), ``penultimate`` (200,
        ``..._pen_000``), ``max_pool`` and ``mean_pool`` (753 each,
        ``..._max_000``, ``..._mean_000``).  Default all four.
    sha256 : str or None
        Expected model hash; filled from the model's sidecar by :meth:`resolve`.
    model_dir : str or None
        Folder (or URL prefix) holding ``musicnn_<variant>.onnx``; default
        :func:`emodist.models.musicnn.default_model_path`.  A location, so not
        recorded.
    """

    version: ClassVar[str] = "1"
    long_name: ClassVar[str] = "MusiCNN tagger outputs, mean over the 3 s patches of the segment"
    batched: ClassVar[bool] = True
    variant: str = "msd"
    outputs: tuple = DEFAULT_OUTPUTS
    sha256: str | None = None
    model_dir: str | None = field(default=None, metadata={"runtime": True}, compare=False)

    def __post_init__(self) -> None:
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models.musicnn import tag_names

        object.__setattr__(self, "variant", str(self.variant).lower())
        tag_names(self.variant)  # refuses an unknown variant
        outs = (self.outputs,) if isinstance(self.outputs, str) else tuple(self.outputs)
        bad = [o for o in outs if o not in OUTPUT_PREFIX]
        if bad or not outs or len(set(outs)) != len(outs):
            raise EmodistError(f"musicnn outputs must be distinct names among "
                               f"{', '.join(OUTPUT_PREFIX)}; got {', '.join(map(str, outs)) or 'none'}")
        object.__setattr__(self, "outputs", outs)

    @property
    def name(self) -> str:
        """``musicnn_msd`` or ``musicnn_mtt``."""
        return f"musicnn_{self.variant}"

    @property
    def model_sha256(self) -> str | None:
        return self.sha256

    @property
    def model_url(self) -> str:
        """Where the model is read from."""
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models.musicnn import default_model_path

        if self.model_dir:
            return f"{str(self.model_dir).rstrip('/')}/musicnn_{self.variant}.onnx"
        return default_model_path(self.variant)

    def input(self) -> InputSpec:
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models.musicnn import SR

        return InputSpec("samples", SR)

    def resolve(self, storage_options: dict | None = None) -> MusiCNN:
        """Read the model's sidecar: its hash (refuses another variant or a mismatch)."""
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models import session

        url = self.model_url
        side = session.read_sidecar(url, storage_options)
        if side.get("model") != "musicnn" or side.get("variant") != self.variant:
            raise ModelError(f"{url}: not a MusiCNN {self.variant.upper()} model (sidecar says "
                             f"{side.get('model')} {side.get('variant')}); build it with "
                             f"'emodist model build musicnn-{self.variant}'")
        check_sha256(url, self.sha256, side["sha256"])
        return replace(self, sha256=side["sha256"])

    def feature_names(self) -> list[str]:
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models.musicnn import tag_names
        from emodist.models.musicnn_graph import OUTPUTS

        names = []
        for out in self.outputs:
            pre = f"{self.name}_{OUTPUT_PREFIX[out]}"
            if out == "taggram":
                names += [f"{pre}_{slug(t)}" for t in tag_names(self.variant)]
            else:
                names += [f"{pre}_{i:03d}" for i in range(OUTPUTS[out])]
        return names

    def prepare(self, segment: Segment) -> np.ndarray:
        """The segment's ``(n_patches, 187, 96)`` log-mel patches (at least one)."""
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models.musicnn import SR, input_patches

        # both taggers read the same patches: made once per segment, kept on it
        patches = getattr(segment, "_musicnn_patches", None)
        if patches is None:
            patches = input_patches(segment.samples(SR), sr=SR)
            patches.flags.writeable = False
            segment._musicnn_patches = patches
        if len(patches) == 0:
            raise DataError(f"segment of {segment.duration_s:g} s is shorter than one "
                            "MusiCNN patch (3 s)")
        return patches

    def finish(self, prepared: list[np.ndarray], context: WorkerContext) -> np.ndarray:
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models.session import run_outputs

        def run(x):
            return run_outputs(x, self.model_url, self.outputs,
                               batch_size=min(context.batch_size, MAX_BATCH),
                               threads=context.threads, sha256=self.sha256,
                               storage_options=context.storage_options)

        return patch_means(prepared, self.outputs, run, self.width)
