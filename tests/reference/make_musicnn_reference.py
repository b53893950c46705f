"""Write tests/reference/musicnn_reference.npz from the TensorFlow outputs of musicnn_reference_tf.py.

Run with the project's Python after ``musicnn_reference_tf.py``::

    python tests/reference/make_musicnn_reference.py musicnn_tf.npz tests/reference/musicnn_reference.npz

and, to print the TensorFlow-vs-ONNX figures of docs/musicnn.md, with the
two built models::

    python tests/reference/make_musicnn_reference.py musicnn_tf.npz tests/reference/musicnn_reference.npz \\
        --compare mtt=musicnn_mtt.onnx msd=musicnn_msd.onnx --emotify ../shared/data/emotify

and with ``--wheel musicnn-0.1.0-py3-none-any.whl`` also each side's distance
from the exact network (the float64 transcription of ``models.py`` in
``tests/musicnn_check.py``, run with the checkpoint's weights): TensorFlow's
fp32 graph vs float64 and the ONNX graph vs float64.

Per segment ``s`` (``seg0``, ``seg1``) the file keeps ``s/path`` (relative
to the Emotify root), ``s/start_s``, ``s/duration_s``, ``s/n_patches``; per
variant ``v`` (``mtt``, ``msd``) the mean over the segment's patches of
``taggram`` (50) and ``penultimate`` (200), and of ``max_pool`` and
``mean_pool`` (753) their norm and their projection on 16 fixed random
directions (:func:`projection`).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

#: Seed of the random projection of the 753-wide pools.
PROJECTION_SEED = 753
VARIANTS = {"mtt": "MTT_musicnn", "msd": "MSD_musicnn"}


def projection(width: int = 753, dims: int = 16, seed: int = PROJECTION_SEED) -> np.ndarray:
    """``(width, dims)`` float64 Gaussian matrix scaled by ``1 / sqrt(width)``."""
    return np.random.default_rng(seed).standard_normal((width, dims)) / np.sqrt(width)


def summarise(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-segment summary of musicnn outputs over its patches."""
    out = {}
    for name in ("taggram", "penultimate"):
        out[name] = outputs[name].mean(axis=0).astype(np.float32)
    p = projection()
    for name in ("max_pool", "mean_pool"):
        mean = outputs[name].astype(np.float64).mean(axis=0)
        out[f"{name}_proj16"] = (mean @ p).astype(np.float32)
        out[f"{name}_norm"] = np.float32(np.linalg.norm(mean))
    return out


def _float64(variant: str, wheel: str, patches: np.ndarray) -> dict[str, np.ndarray]:
    """The network on ``patches`` in float64 (``tests.musicnn_check.numpy_musicnn``), stacked."""
    from pathlib import Path

    from emodist.models.musicnn import load_weights

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.musicnn_check import numpy_musicnn

    weights = load_weights(variant, wheel)
    each = [numpy_musicnn(weights, p) for p in patches]
    return {k: np.stack([e[k] for e in each]) for k in each[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tf_npz")
    ap.add_argument("out_npz")
    ap.add_argument("--compare", nargs="*", default=[])
    ap.add_argument("--emotify")
    ap.add_argument("--wheel", help="musicnn wheel: also compare both sides with float64")
    args = ap.parse_args(argv)
    tf = np.load(args.tf_npz)
    arrays = {"projection_seed": np.int64(PROJECTION_SEED), "tf_version": tf["tf_version"]}
    n_seg = len({k.split("/")[0] for k in tf.files if k.startswith("seg")})
    for i in range(n_seg):
        s = f"seg{i}"
        for key in ("path", "start_s", "duration_s"):
            arrays[f"{s}/{key}"] = tf[f"{s}/{key}"]
        arrays[f"{s}/n_patches"] = np.int64(len(tf[f"{s}/patches"]))
        for v, name in VARIANTS.items():
            outs = {k: tf[f"{s}/{name}/{k}"] for k in ("taggram", "penultimate", "max_pool", "mean_pool")}
            for k, val in summarise(outs).items():
                arrays[f"{s}/{v}/{k}"] = val
    np.savez_compressed(args.out_npz, **arrays)
    print(f"wrote {args.out_npz}")

    if args.compare:
        from emodist.data.audio import load_track
        from emodist.models.musicnn import input_patches, run_model

        models = dict(item.split("=", 1) for item in args.compare)
        for i in range(n_seg):
            s = f"seg{i}"
            ref_patches = tf[f"{s}/patches"]
            line = [f"{s} {tf[f'{s}/path']}: {len(ref_patches)} patches"]
            line.append(f"input_patches(musicnn's audio) max abs diff "
                        f"{np.abs(input_patches(tf[f'{s}/audio']) - ref_patches).max():.3g}")
            if args.emotify:
                y = load_track(f"{args.emotify}/{tf[f'{s}/path']}", 16000,
                               offset_s=float(tf[f"{s}/start_s"]), duration_s=float(tf[f"{s}/duration_s"]))
                line.append(f"input_patches(emodist.data.audio.load_track) max abs diff "
                            f"{np.abs(input_patches(y) - ref_patches).max():.3g}")
            print("; ".join(line))
            for v, path in models.items():
                outs = run_model(path, ref_patches, threads=1)
                exact = _float64(v, args.wheel, ref_patches) if args.wheel else None
                diffs = []
                for k, val in outs.items():
                    ref = tf[f"{s}/{VARIANTS[v]}/{k}"]
                    text = f"{k} {np.abs(val - ref).max():.2e} (max |value| {np.abs(ref).max():.3g}"
                    if exact is not None:
                        text += (f"; vs float64: TensorFlow {np.abs(ref - exact[k]).max():.2e}, "
                                 f"ONNX {np.abs(val - exact[k]).max():.2e}")
                    diffs.append(text + ")")
                print(f"  {v}: " + ", ".join(diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
