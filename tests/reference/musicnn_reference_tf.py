"""Run the original musicnn (TensorFlow) on two real segments; save inputs and outputs.

Not part of the project or its tests: it runs once, in a throwaway virtual
environment outside the project, to produce the figures of docs/musicnn.md
and, through ``tests/reference/make_musicnn_reference.py``, the committed
``tests/reference/musicnn_reference.npz``::

    python3 -m venv TFVENV
    TFVENV/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0 librosa==0.11.0 soundfile soxr
    TFVENV/bin/pip install numpy==1.26.4 ml_dtypes==0.5.1
    TFVENV/bin/pip install --no-deps musicnn-0.1.0-py3-none-any.whl
    TF_USE_LEGACY_KERAS=1 TFVENV/bin/python tests/reference/musicnn_reference_tf.py \\
        ../shared/data/emotify musicnn_tf.npz

Inputs are made by musicnn's own ``extractor.batch_data`` (its librosa.load
limited to the segment: offset 0 s, duration 15 s); the graph is musicnn's
own ``models.define_model`` under ``tf.name_scope('model')`` as in
``extractor.extractor``, restored from the wheel's checkpoint with a
``tf.compat.v1.train.Saver`` and run with ``is_training=False``.

numpy 1.x is needed for musicnn's input: ``np.log10(10000 * audio_rep + 1)``
on its float16 ``audio_rep`` is computed in float32 under numpy 1's
value-based casting (musicnn pins numpy < 1.17), but in float16 under numpy
2's rules (NEP 50), where every mel value above 6.55 overflows to inf.
"""

from __future__ import annotations

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf

tf.compat.v1.disable_eager_execution()

from musicnn import configuration as config
from musicnn import extractor, models

SEGMENTS = (("emotifymusic/classical/1.mp3", 0.0, 15.0), ("emotifymusic/rock/1.mp3", 0.0, 15.0))
MODELS = ("MTT_musicnn", "MSD_musicnn")


def musicnn_input(path: str, offset: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """(patches, audio) of musicnn's batch_data on one segment of a file."""
    captured = {}
    original = extractor.librosa.load

    def load(file, sr):
        y, rate = original(file, sr=sr, offset=offset, duration=duration)
        captured["y"] = y
        return y, rate

    extractor.librosa.load = load
    try:
        batch, _ = extractor.batch_data(path, 187, 187)
    finally:
        extractor.librosa.load = original
    if batch.dtype != np.float32 or not np.isfinite(batch).all():
        raise SystemExit(f"musicnn's input is {batch.dtype} with inf: run this with numpy 1.x")
    return batch, captured["y"]


def run_model(model: str, patches: np.ndarray) -> dict[str, np.ndarray]:
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, _timbral, _temporal, _cnn1, _cnn2, _cnn3, mean_pool, max_pool, penultimate = \
            models.define_model(x, is_training, model, 50)
        normalized_y = tf.nn.sigmoid(y)
    sess = tf.compat.v1.Session()
    sess.run(tf.compat.v1.global_variables_initializer())
    saver = tf.compat.v1.train.Saver()
    saver.restore(sess, os.path.dirname(extractor.__file__) + "/" + model + "/")
    out = sess.run([normalized_y, penultimate, max_pool, mean_pool],
                   feed_dict={x: patches, is_training: False})
    sess.close()
    return dict(zip(("taggram", "penultimate", "max_pool", "mean_pool"), out))


def main(root: str, out_path: str) -> None:
    arrays = {"tf_version": np.array(tf.__version__)}
    for i, (rel, offset, duration) in enumerate(SEGMENTS):
        patches, y = musicnn_input(os.path.join(root, rel), offset, duration)
        arrays[f"seg{i}/path"] = np.array(rel)
        arrays[f"seg{i}/start_s"] = np.float64(offset)
        arrays[f"seg{i}/duration_s"] = np.float64(duration)
        arrays[f"seg{i}/audio"] = y.astype(np.float32)
        arrays[f"seg{i}/patches"] = patches
        for model in MODELS:
            for name, value in run_model(model, patches).items():
                arrays[f"seg{i}/{model}/{name}"] = value.astype(np.float32)
        print(rel, patches.shape, flush=True)
    np.savez_compressed(out_path, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:3])
