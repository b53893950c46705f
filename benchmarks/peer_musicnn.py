"""musicnn's own pipeline over a list of tracks: the peer of ``bench_recognise``.

Not part of emodist: it runs in a throwaway environment that has TensorFlow
and the ``musicnn`` wheel (see ``bench_recognise`` for how to make one), as
a subprocess started with ``$EMODIST_PEER_PYTHON``::

    PEER_PYTHON benchmarks/peer_musicnn.py JOB.json OUT.npz

``JOB.json``: ``{"tracks": [{"path": ..., "segments": [[start_s, duration_s],
...]}, ...], "model": "MSD_musicnn", "threads": 1, "batch": 1}``.

What it runs, per track: musicnn's ``extractor.batch_data`` (``librosa.load``
at 16 kHz, its mel spectrogram, float16, ``log10(10000 x + 1)``, 187-frame
patches without overlap) and musicnn's graph (``models.define_model`` under
``tf.name_scope('model')``, restored from the wheel's checkpoint with
``tf.compat.v1.train.Saver``, ``is_training=False``), as
``extractor.extractor`` does.  Two departures, both in the peer's favour:
the graph is built and restored **once** for all tracks (``extractor``
rebuilds it for every file), and only the four outputs emodist keeps are
fetched (``taggram``, ``penultimate``, ``max_pool``, ``mean_pool``; not the
per-frame maps).  The track is decoded once, then ``batch_data`` makes the
patches of each of the job's 15 s segments from that decode (its
``librosa.load`` is replaced by one that returns the segment's samples, as
``tests/data/musicnn_reference_tf.py`` does), so that the peer computes the
same patches per track as a whole-track call (20 for 60 s) and a value per
segment that can be compared with emodist's.

Written: ``OUT.npz`` with, per output, the mean over each segment's patches
(``(n_segments, width)``, segments in job order), and on stdout one JSON
line: ``started`` and ``ready`` (``time.time()`` at the start of this script
and once TensorFlow is imported and the graph restored), ``stamps`` (per
track: ``time.time()``, process CPU seconds, patches), the TensorFlow
version and the thread settings.
"""

from __future__ import annotations

import json
import os
import sys
import time

STARTED = time.time()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

OUTPUTS = ("taggram", "penultimate", "max_pool", "mean_pool")


def main(job_path: str, out_path: str) -> int:
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    from musicnn import configuration as config
    from musicnn import extractor, models

    with open(job_path) as fh:
        job = json.load(fh)
    model = job.get("model", "MSD_musicnn")
    threads = int(job.get("threads", 1))
    batch_size = int(job.get("batch", config.BATCH_SIZE))
    labels = config.MSD_LABELS if "MSD" in model else config.MTT_LABELS
    n_frames = 187  # extractor: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1

    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, _t, _te, _c1, _c2, _c3, mean_pool, max_pool, penultimate = models.define_model(
            x, is_training, model, len(labels))
        normalized_y = tf.nn.sigmoid(y)
    session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                              inter_op_parallelism_threads=threads)
    sess = tf.compat.v1.Session(config=session_config)
    sess.run(tf.compat.v1.global_variables_initializer())
    tf.compat.v1.train.Saver().restore(sess, os.path.dirname(extractor.__file__) + "/" + model + "/")
    fetch = [normalized_y, penultimate, max_pool, mean_pool]
    ready = time.time()

    original_load = extractor.librosa.load
    means = {k: [] for k in OUTPUTS}
    stamps = []
    try:
        for track in job["tracks"]:
            audio, sr = original_load(track["path"], sr=config.SR)  # the one decode of the track
            patches_done = 0
            for start_s, duration_s in track["segments"]:
                a = round(start_s * sr)
                cut = audio[a:a + round(duration_s * sr)]
                extractor.librosa.load = lambda _file, sr, _cut=cut: (_cut, sr)
                patches, _ = extractor.batch_data(track["path"], n_frames, n_frames)
                outs = [sess.run(fetch, feed_dict={x: patches[i:i + batch_size], is_training: False})
                        for i in range(0, len(patches), batch_size)]
                for j, name in enumerate(OUTPUTS):
                    means[name].append(np.concatenate([o[j] for o in outs]).mean(axis=0))
                patches_done += len(patches)
            stamps.append([time.time(), time.process_time(), patches_done])
    finally:
        extractor.librosa.load = original_load
    sess.close()
    np.savez(out_path, **{k: np.asarray(v, dtype=np.float32) for k, v in means.items()})
    print(json.dumps({"started": STARTED, "ready": ready, "stamps": stamps,
                      "tensorflow": tf.__version__, "threads": threads, "batch": batch_size,
                      "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
