"""Deep features: Inception-v3 as ONNX, built without torch, run with ONNX Runtime.

- :mod:`emodist.deep.graph`: the Inception-v3 topology as an ONNX graph builder.
- :mod:`emodist.deep.unpickle`: reads TorchScript archive tensors without torch.
- :mod:`emodist.deep.build`: the real model from its PyPI wheel; the tiny test model.
- :mod:`emodist.deep.session`: cached sessions and batched :func:`embed`.
"""
