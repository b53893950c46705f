"""emodist: distributed feature extraction for music emotion recognition.

The pipeline, one package per stage, imports one way down (each stage
imports only from itself and the stages listed before it; ``errors``,
``progress`` and ``spec`` are below them all):

- :mod:`emodist.data`: catalog (tracks, labels, vote profiles), segment plan
  from file headers, decoding once per track, demo data;
- :mod:`emodist.models`: ONNX models built without torch or TensorFlow, the
  network input, and the sessions cached per worker;
- :mod:`emodist.features`: the feature-group interface, the shared STFT, the
  handcrafted, Inception-v3 and MusiCNN groups, groups from model cards, and
  the registry;
- :mod:`emodist.store`: the Zarr layout, template and region writes, the one
  :func:`open_store`, and the ``ds.emodist`` accessor (select, similar);
- :mod:`emodist.runtime`: the cluster and the executor shared by extraction
  and evaluation;
- :mod:`emodist.learn`: grouped cross-validation, classifiers, reports;
- :mod:`emodist.engine`: the pure extraction plan, planning on the workers,
  the extraction driver and the whole pipeline;
- :mod:`emodist.cli`: the command line, the only place that knows flag names.

:class:`~emodist.spec.ExtractionSpec` is what defines stored values;
:class:`~emodist.spec.Runtime` is how a run goes.
"""

from emodist._version import __version__
from emodist.errors import EmodistError
from emodist.spec import ExtractionSpec, Runtime

__all__ = ["EmodistError", "ExtractionSpec", "Runtime", "__version__", "open_store"]


def __getattr__(name):
    # the store API is imported lazily so that ``import emodist`` stays light
    if name == "open_store":
        from emodist.store import open_store

        return open_store
    raise AttributeError(f"module 'emodist' has no attribute {name!r}")
