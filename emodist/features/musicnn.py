"""The MusiCNN feature groups: ``musicnn_msd`` and ``musicnn_mtt``.

One class, :class:`MusiCNN`, parametrised by the tagger variant (``"msd"``:
Million Song Dataset, ``"mtt"``: MagnaTagATune) and registered under both
names.  Each segment's 16 kHz samples (the worker resamples the one decode of
the track once to 16 kHz) become musicnn's log-mel patches
(:func:`emodist.models.musicnn.input_patches`: 187 frames x 96 bands, 5
patches for a 15 s segment, made once per segment for both taggers); every
patch of a chunk goes through the ONNX network in batches through the worker's
model runner (:meth:`emodist.features.base.WorkerContext.run_model`: the CPU,
or the CUDA execution provider with ``--device cuda``), and each segment
keeps the mean over its patches of the selected outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from emodist.errors import DataError, EmodistError, ModelError
from emodist.features.base import FeatureGroup, InputSpec, Segment, WorkerContext, patch_means

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
    options: ClassVar[dict[str, str]] = {"musicnn_outputs": "outputs",
                                         "musicnn_dir": "model_dir"}
    variant: str = "msd"
    outputs: tuple = DEFAULT_OUTPUTS
    sha256: str | None = None
    model_dir: str | None = field(default=None, metadata={"runtime": True}, compare=False)

    def __post_init__(self) -> None:
        from emodist.models import musicnn as net  # lazy: keeps onnx out of `emodist --help`
        object.__setattr__(self, "variant", str(self.variant).lower())
        net.tag_names(self.variant)  # refuses an unknown variant
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
        from emodist.models import musicnn as net  # lazy: keeps onnx out of `emodist --help`
        if self.model_dir:
            return f"{str(self.model_dir).rstrip('/')}/musicnn_{self.variant}.onnx"
        return net.default_model_path(self.variant)

    def input(self) -> InputSpec:
        from emodist.models import musicnn as net  # lazy: keeps onnx out of `emodist --help`
        return InputSpec("samples", net.SR)

    def resolve(self, storage_options: dict | None = None) -> MusiCNN:
        """Read the model and its sidecar: its hash (refuses another variant or a mismatch).

        The model's bytes are hashed here, on the driver before anything is written.
        """
        from emodist.models import session  # lazy: keeps onnx out of `emodist --help`
        url = self.model_url
        side = session.read_sidecar(url, storage_options, build=f"musicnn-{self.variant}")
        if side.get("model") != "musicnn" or side.get("variant") != self.variant:
            raise ModelError(f"{url}: not a MusiCNN {self.variant.upper()} model (sidecar says "
                             f"{side.get('model')} {side.get('variant')}); build it with "
                             f"'emodist model build musicnn-{self.variant}'")
        _, side = session.read_model(url, sha256=self.sha256, storage_options=storage_options,
                                     meta=side, param="musicnn_dir")
        return replace(self, sha256=side["sha256"])

    def feature_names(self) -> list[str]:
        from emodist.models import musicnn as net  # lazy: keeps onnx out of `emodist --help`
        names = []
        for out in self.outputs:
            pre = f"{self.name}_{OUTPUT_PREFIX[out]}"
            if out == "taggram":
                names += [f"{pre}_{slug(t)}" for t in net.tag_names(self.variant)]
            else:
                names += [f"{pre}_{i:03d}" for i in range(net.OUTPUTS[out])]
        return names

    def prepare(self, segment: Segment) -> np.ndarray:
        """The segment's ``(n_patches, 187, 96)`` log-mel patches (at least one, read-only).

        Both taggers read the same patches: made once per segment
        (:meth:`Segment.shared`).
        """
        patches = segment.shared("musicnn_patches", _patches)
        if len(patches) == 0:
            raise DataError(f"segment of {segment.duration_s:g} s is shorter than one "
                            "MusiCNN patch (3 s)")
        return patches

    def finish(self, prepared: list[np.ndarray], context: WorkerContext) -> np.ndarray:
        # on the CPU, at most MAX_BATCH patches per call (on a GPU the batch is automatic)
        context = replace(context, batch_size=min(context.batch_size, MAX_BATCH))
        return patch_means(prepared, self.outputs,
                           lambda x: context.run_model(self.model_url, x, self.outputs,
                                                       self.sha256), self.width)


def _patches(segment: Segment) -> np.ndarray:
    from emodist.models import musicnn as net  # lazy: keeps onnx out of `emodist --help`
    return net.input_patches(segment.samples(net.SR), sr=net.SR)
