"""emodist: distributed feature extraction for music emotion recognition.

Pipeline stages, one module each: :mod:`emodist.data.catalog` (tracks, labels,
vote distributions), :mod:`emodist.data.segments` (segment plan from file
headers), :mod:`emodist.data.audio` (decode once), :mod:`emodist.features.spectral` (one
STFT per segment), :mod:`emodist.features.handcrafted`, :mod:`emodist.features.images`,
:mod:`emodist.deep` (ONNX Inception-v3), :mod:`emodist.store.zarrio` (Zarr layout and
region writes), :mod:`emodist.engine.extract` (Dask orchestration),
:mod:`emodist.learn.evaluate` (grouped cross-validation) and :mod:`emodist.store.query`.
"""

from emodist._version import __version__
from emodist.spec import Config
from emodist.errors import EmodistError

__all__ = ["Config", "EmodistError", "__version__", "open_store", "select", "similar"]


def __getattr__(name):
    # The query API is imported lazily so that ``import emodist`` stays light.
    if name in ("open_store", "select", "similar"):
        from emodist.store import query

        return getattr(query, name)
    raise AttributeError(f"module 'emodist' has no attribute {name!r}")
